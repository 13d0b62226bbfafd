"""Shared fixtures: paths to the reference data, small checkpoints and a ready patch set."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))

from models.hinet import HINet  # noqa: E402

torch.set_num_threads(2)


def run_cli(module, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a script's main in-process the way the command line does; returns (exit status, stdout, stderr)."""
    from utils.core.cli import run_cli as runner

    code = runner(module.main, [str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from utils.core.locks import output_lock, private_folder
with output_lock(Path({target!r}), "test", shared={shared}), private_folder(Path({target!r})):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock(target: Path, shared: bool = False) -> subprocess.Popen:
    """A real process holding the lock of ``target`` (and a staging folder beside it) until killed."""
    code = HOLD.format(root=str(ROOT), target=str(target), shared=shared)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def load_script(name: str):
    """Import a top-level script by path (``test.py`` would otherwise collide with the standard library's ``test``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_hashes(root: Path) -> dict[str, str]:
    """Every entry under ``root`` with the SHA-256 of each file: equal before and after means nothing changed."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def world(tmp_path: Path, monkeypatch) -> Path:
    """A working folder (the current one) with the reference checkpoints in weights/, test inputs, contest data
    holding a note of the user's, and a patch set and a run made by the project."""
    from utils.core.outputs import staged_dir

    monkeypatch.chdir(tmp_path)
    ref = FIXTURES / "inference_reference"
    (tmp_path / "weights").mkdir()
    for name in ("256_best.pth", "352_best.pth"):
        shutil.copy(ref / name, tmp_path / "weights" / name)
    shutil.copytree(ref / "test_input_img", tmp_path / "data" / "test_input_img")
    shutil.copytree(FIXTURES / "patch_reference" / "train_original", tmp_path / "data" / "train_original")
    (tmp_path / "data" / "train_original" / "my_notes.txt").write_text("mine")
    for folder, kind, name in (("data/train/10Folds/0/resize64", "patches", "input/a.png"),
                               ("results/001", "run", "last.pth")):  # fmt: skip
        with staged_dir(tmp_path / folder, kind, "test", True) as stage:
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(b"made by the project")
    return tmp_path


def tiny_model(seed: int = 0, **kwargs) -> HINet:
    torch.manual_seed(seed)
    config = dict(wf=4, depth=3) | kwargs
    return HINet(**config).eval()


@pytest.fixture
def train_original(tmp_path: Path) -> Path:
    """A writable copy of the five-pair reference set in the contest layout: <tmp>/data/train_original."""
    dst = tmp_path / "data" / "train_original"
    shutil.copytree(FIXTURES / "patch_reference" / "train_original", dst)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.fixture(scope="session")
def patch_data(tmp_path_factory) -> Path:
    """A data folder with train_original and its 256 patches (fold 0 of 3), made once per session."""
    import make_patch

    root = tmp_path_factory.mktemp("patchdata") / "data"
    shutil.copytree(FIXTURES / "patch_reference" / "train_original", root / "train_original")
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    src = root / "train_original"
    make_patch.main([
        "--folds", "3", "--process_num", "2", "--no_progress", "--input_path", str(src / "train_input_img"),
        "--target_path", str(src / "train_label_img"), "--csv_path", str(src), "--save_path", str(root),
    ])  # fmt: skip
    return root


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny HINet's checkpoint that says it was trained on 32-pixel patches: restore.py's tiles."""
    model = tiny_model(seed=3)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 32}, path)
    return path

"""scripts.flare_data and scripts.starter against bad caches, users' folders, extreme flags and interruptions.

A damaged PSF cache, a pair that cannot be right, a user's empty folders under ``<root>/train``,
flags out of range, running out of memory, an ``--output`` that cannot be written, and a signal
to a command that runs another (scripts.commands): each is one sentence or handled, with the
earlier data set intact. Tiny sizes throughout; the signal tests run a real child process.
"""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import make_patch
from conftest import ROOT, run_cli
from scripts import flare_data, flare_files, starter
from utils.core.errors import UserError
from utils.flare.bank import BankSettings, PSFBank, cache_path
from utils.flare.composite import FlarePair
from utils.flare.data_settings import FlareDataSettings

TINY = ["--height", 64, "--width", 96, "--psf_count", 2, "--psf_grid", 64, "--psf_size", 32, "--workers", 1]
BANK = BankSettings(count=2, grid=64, size=32)


def _run(root, capsys, *extra):
    argv = ["--root", root, "--train_count", 2, "--test_count", 1, "--no_progress", *TINY, *extra]
    return run_cli(flare_data, argv, capsys)


def _files(root, skip=".flare_cache"):
    """Every file and folder under ``root`` but the PSF cache, with its content's hash (folders: None)."""
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else None
        for p in sorted(root.rglob("*"))
        if not p.relative_to(root).as_posix().startswith(skip)
    }


def _images(root):
    return {k: v for k, v in _files(root).items() if k.endswith(".png")}


@pytest.fixture
def data(tmp_path, capsys):
    """A tiny data set made by the command, and what it holds."""
    root = tmp_path / "data"
    code, _, err = _run(root, capsys)
    assert code == 0, err
    return root, _files(root)


def _inputs(root):
    paths = sorted(root.rglob("*_input_*.png"))
    assert len(paths) == 3
    return [cv2.imread(str(p)) for p in paths]


def _poison(root, roots):
    """The cache file rewritten with the right key, shapes and dtype, and ``roots`` (the stored PSFs)."""
    path = cache_path(root / flare_data.CACHE, BANK, 0)
    with np.load(path) as old:
        arrays = dict(old)
    np.savez_compressed(path, **(arrays | {"roots": roots(arrays["roots"])}))
    return path


@pytest.mark.parametrize(
    "roots",
    [
        np.zeros_like,  # finite and non-negative, but every PSF sums to 0: NaN flare, black inputs
        lambda r: np.concatenate([r[..., :2], np.zeros_like(r[..., 2:])], axis=-1),  # one channel empty
        lambda r: r * np.float16(0.5),  # no PSF peaks at 1
    ],
)
def test_a_poisoned_psf_cache_is_computed_again(data, capsys, roots):
    root, before = data
    path = _poison(root, roots)
    with pytest.warns(UserWarning, match=re.escape(f"{path} is not a valid PSF bank")):
        code, _, err = _run(root, capsys, "--overwrite")
    assert code == 0, err
    assert all(img.mean() > 1 for img in _inputs(root))
    assert _images(root) == {k: v for k, v in before.items() if k.endswith(".png")}  # the same seed, the same set
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cache file was replaced by a valid one: no warning
        assert _run(root, capsys, "--overwrite")[0] == 0


def test_a_cache_path_that_is_a_folder_is_refused_and_the_set_kept(data, capsys):
    root, before = data
    path = cache_path(root / flare_data.CACHE, BANK, 0)
    path.unlink()
    path.mkdir()
    (path / "mine.txt").write_text("a user's note")
    code, _, err = _run(root, capsys, "--overwrite")
    assert code == 2 and err.count("\n") == 1 and f"error: {path} is not a file" in err
    assert _files(root) == before
    assert (path / "mine.txt").read_text() == "a user's note"


def test_a_pair_that_cannot_be_right_stops_the_run_and_keeps_the_set(data, capsys, monkeypatch):
    """A bank that passed its checks yet makes NaN flare: no pair is written, nothing replaced."""
    root, before = data
    bad = PSFBank(np.zeros((2, 32, 32, 3), np.float16), np.zeros((2, 32, 32), np.uint8), np.zeros(2), np.zeros(2))
    monkeypatch.setattr(flare_data, "load_or_compute", lambda *a, **k: bad)
    code, _, err = _run(root, capsys, "--overwrite")
    assert code == 2 and err.count("\n") == 1
    assert "train pair 0 came out with pixels that are not numbers" in err and "nothing was replaced" in err
    assert _files(root) == before


def test_pair_problem_sees_an_input_black_under_a_white_target():
    target = np.full((4, 4, 3), 40, np.uint8)
    target[1, 1] = 255
    assert flare_files.pair_problem(FlarePair(np.zeros_like(target), target)) is not None
    assert flare_files.pair_problem(FlarePair(target.copy(), target)) is None
    assert flare_files.pair_problem(FlarePair(target.copy(), target, finite=False)) is not None
    assert flare_files.pair_problem(FlarePair(np.zeros_like(target), np.zeros_like(target))) is None  # black night


def test_a_users_empty_folders_under_train_are_kept(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "train" / "my_empty_project" / "sub").mkdir(parents=True)
    code, _, err = _run(root, capsys)
    assert code == 0, err
    assert (root / "train" / "my_empty_project" / "sub").is_dir()


def test_overwrite_removes_the_patches_and_keeps_a_users_empty_folder_beside_them(data, capsys):
    root, _ = data
    src = root / "train_original"
    code, out, err = run_cli(make_patch, [
        "--folds", 2, "--img_size", 32, "--stride", 32, "--resize", 32, "--patch_growth_count", 1,
        "--v_threshold", 5, "--process_num", 1, "--no_progress", "--input_path", src / "train_input_img",
        "--target_path", src / "train_label_img", "--csv_path", src, "--save_path", root,
    ], capsys)  # fmt: skip
    assert code == 0, err
    patches = [p for p in (root / "train").rglob("*.png")]
    assert patches
    mine = patches[0].parents[2] / "my_folder"
    mine.mkdir()
    code, _, err = _run(root, capsys, "--overwrite")
    assert code == 0, err
    assert not [p for p in (root / "train").rglob("*") if p.is_file()] and mine.is_dir()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", -1], "--seed must be 0 to 4294967295 (got -1)"),
        (["--seed", 2**32], "--seed must be 0 to 4294967295"),
        (["--psf_grid", 2**30], "--psf_grid must be 64 to 4096 (got 1073741824)"),
        (["--psf_grid", 2**12 + 2**11], "--psf_grid must be 64 to 4096"),
        (["--psf_count", 10**6], "--psf_count must be 1 to 1024"),
        (["--workers", 10**6], "--workers must be 1 to 256"),
    ],
)
def test_flags_out_of_range_are_one_sentence(tmp_path, capsys, extra, message):
    code, _, err = _run(tmp_path / "data", capsys, *extra)
    assert code == 2 and err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "data").exists()


def _out_of_memory(*args, **kwargs):
    raise MemoryError("Unable to allocate 256. MiB for an array with shape (8192, 8192) and data type float32")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_out_of_memory_is_one_sentence_and_keeps_the_set(data, capsys, monkeypatch, workers):
    root, before = data
    monkeypatch.setattr(flare_files, "make_pair", _out_of_memory)  # forked workers inherit it
    code, _, err = _run(root, capsys, "--overwrite", "--workers", workers)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: out of memory")
    assert "smaller --height/--width" in err
    assert _files(root) == before


# ---------------------------------------------------------------- scripts.starter


@pytest.fixture
def no_commands(monkeypatch):
    ran = []
    monkeypatch.setattr(starter, "run", lambda cmd, **_: ran.append(cmd))
    return ran


def test_starter_refuses_a_folder_as_output(tmp_path, capsys, no_commands):
    (tmp_path / "out").mkdir()
    code, _, err = run_cli(starter, ["--root", tmp_path / "st", "--output", tmp_path / "out", "--overwrite"], capsys)
    assert code == 2 and "is a folder" in err and err.count("\n") == 1 and not no_commands


def test_starter_refuses_an_output_under_a_file(tmp_path, capsys, no_commands):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(starter, ["--root", tmp_path / "st", "--output", tmp_path / "file" / "m.pth"], capsys)
    assert code == 2 and f"lies under {tmp_path / 'file'}, which is a file" in err and not no_commands


@pytest.mark.parametrize("profile", ["cpu", "finish"])
def test_starter_never_packs_over_the_weights_it_starts_from(capsys, no_commands, profile):
    start = starter.start_weights(starter.PROFILES[profile])
    before = start.read_bytes()
    args = ["--profile", profile, "--root", "unused", "--output", start, "--overwrite"]
    code, _, err = run_cli(starter, args, capsys)
    assert code == 2 and "overlaps the starting weights" in err and not no_commands
    assert start.read_bytes() == before
    main_py = starter.commands(starter.PROFILES[profile], Path("st"), "cpu")[2]
    assert (ROOT / main_py[main_py.index("--pretrained_path") + 1]).resolve() == start.resolve()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_starter_refuses_a_read_only_output_folder(tmp_path, capsys, no_commands):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    code, _, err = run_cli(starter, ["--root", tmp_path / "st", "--output", ro / "m.pth"], capsys)
    assert code == 2 and "cannot be written" in err and not no_commands


# ---------------------------------------------------------------- scripts.commands: interruptions


CHILD = """
import os, signal, sys, time
from pathlib import Path
folder = Path(sys.argv[1])
def cleanup(signum, frame):
    (folder / "signal").write_text(str(signum))
    if sys.argv[2] == "stubborn":
        return  # goes on, and has to be killed
    time.sleep(0.3)  # a clean-up that takes a while
    (folder / "cleaned").write_text("yes")
    sys.exit(1)
signal.signal(signal.SIGTERM, cleanup)
signal.signal(signal.SIGINT, cleanup)
(folder / "pid").write_text(str(os.getpid()))
time.sleep(60)
"""

PARENT = """
import sys
sys.path.insert(0, {root!r})
from scripts import commands
from utils.core.cli import run_cli
commands.STOP_WAIT = 1.0
sys.exit(run_cli(lambda argv: commands.run([sys.executable, "-c", {child!r}, {folder!r}, {mode!r}])))
"""


def _parent(tmp_path, mode):
    code = PARENT.format(root=str(ROOT), child=CHILD, folder=str(tmp_path), mode=mode)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if (tmp_path / "pid").is_file() and (tmp_path / "pid").read_text():
            return proc, int((tmp_path / "pid").read_text())
        time.sleep(0.05)
    proc.kill()
    pytest.fail("the child never started")


def _alive(pid):
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_command_lets_its_child_clean_up(tmp_path, signum):
    proc, child = _parent(tmp_path, "cleans")
    try:
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130 and "interrupted" in err
        assert (tmp_path / "signal").read_text() == str(int(signal.SIGTERM))
        assert (tmp_path / "cleaned").read_text() == "yes" and not _alive(child)
    finally:
        proc.kill()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_child_that_does_not_stop_is_killed_after_the_wait(tmp_path):
    proc, child = _parent(tmp_path, "stubborn")
    try:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        assert proc.returncode == 130 and (tmp_path / "signal").read_text() == str(int(signal.SIGTERM))
        assert not (tmp_path / "cleaned").exists() and not _alive(child)
    finally:
        proc.kill()
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_generate_keeps_the_library_check_of_ranges(tmp_path):
    """generate(), which the demo and the benches call, checks the same ranges as the flags."""
    with pytest.raises(UserError, match="--seed must be 0 to"):
        flare_data.generate(
            FlareDataSettings(tmp_path / "d", 2, 1, 64, 96, seed=-5, progress=False, workers=1, psf_count=2,
                              psf_grid=64, psf_size=32)
        )  # fmt: skip
    assert not (tmp_path / "d").exists()

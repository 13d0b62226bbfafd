"""test.py under torchrun: balanced shares, and the same output, byte for byte, as one process's."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, tiny_model
from utils.infer.shards import image_shares, in_input_order


def test_shares_balance_pixels_and_cover_every_image_once():
    pixels = [100, 1, 1, 1, 97, 50, 48]
    shares = image_shares(pixels, 2)
    assert sorted(i for s in shares for i in s) == list(range(len(pixels)))
    loads = [sum(pixels[i] for i in s) for s in shares]
    assert abs(loads[0] - loads[1]) <= 3  # 150 and 148: the large images are split, not dealt in turn
    assert all(s == sorted(s) for s in shares)
    assert image_shares(pixels, 1) == [list(range(len(pixels)))]
    results = [[f"r{i}" for i in s] for s in shares]
    assert in_input_order(results, pixels, pixels, 2) == [f"r{i}" for i in range(len(pixels))]


def _test_py(args, cwd, nproc: int | None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads per process in both runs
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd = [*(launch if nproc else [sys.executable]), str(ROOT / "test.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=240)


@pytest.fixture
def folder(tmp_path):
    """Two tiny checkpoints, five test images of mixed sizes with clean targets, and a held-out fit set."""
    for i in range(2):
        model = tiny_model(seed=i)
        torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 32},
                   tmp_path / f"m{i}.pth")  # fmt: skip
    rng = np.random.default_rng(1)
    for sub in ("in", "clean", "fit_in", "fit_clean"):
        (tmp_path / sub).mkdir()
    for i, (h, w) in enumerate([(90, 70), (32, 40), (48, 48), (64, 100), (40, 33)]):
        clean = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "clean" / f"test_input_{i}.png"), clean)
        cv2.imwrite(str(tmp_path / "in" / f"test_input_{i}.png"), clean + rng.integers(0, 50, clean.shape, np.uint8))
    for i in range(3):
        clean = rng.integers(0, 200, (40, 48, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / "fit_clean" / f"f_{i}.png"), clean)
        cv2.imwrite(str(tmp_path / "fit_in" / f"f_{i}.png"), clean + 30)
    return tmp_path


def test_two_processes_write_what_one_writes(folder):
    common = ["--weights", "m0.pth", "m1.pth", "--input_dir", "in", "--eval_dir", "clean", "--fit_weights",
              "--fit_input_dir", "fit_in", "--fit_label_dir", "fit_clean", "--device", "cpu", "--no_progress"]  # fmt: skip
    one = _test_py([*common, "--output_dir", "one"], folder, None)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _test_py([*common, "--output_dir", "two"], folder, 2)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("5 images restored") == 1 and "2 processes" in two.stdout  # rank 0 alone reports
    names = sorted(p.name for p in (folder / "one").iterdir() if p.name != ".hinet-output.json")
    assert names == sorted(p.name for p in (folder / "two").iterdir() if p.name != ".hinet-output.json")
    assert {"submission.zip", "metrics.csv", "ensemble.json", "test_0.png"} <= set(names)
    for name in names:
        assert (folder / "one" / name).read_bytes() == (folder / "two" / name).read_bytes(), name


def test_a_failing_process_stops_both_with_its_sentence(folder):
    broken = folder / "in" / "test_input_0.png"  # the second process's share: a valid header, no pixels
    broken.write_bytes(broken.read_bytes()[:60])
    result = _test_py(["--weights", "m0.pth", "--input_dir", "in", "--output_dir", "out", "--device", "cpu"], folder, 2)
    assert result.returncode != 0
    assert result.stderr.count("error: in/test_input_0.png could not be decoded") == 1  # said once, by one process
    assert "utils/" not in result.stderr  # no traceback of ours (torchrun adds its own report of the exits)
    assert not (folder / "out").exists() and not list(folder.glob(".out*"))


def test_more_processes_than_images_is_refused(folder, monkeypatch):
    """Checked before any process waits for another, so one process with a world of two shows it."""
    from utils.core.distributed import Dist
    from utils.core.errors import UserError
    from utils.infer.options import Ensemble, InferenceOptions, model_specs
    from utils.infer.submission import run_inference

    for p in list((folder / "in").iterdir())[1:]:
        p.unlink()
    monkeypatch.chdir(folder)
    specs = model_specs(Ensemble(weights=("m0.pth",)))
    with pytest.raises(UserError, match=r"2 processes for 1 image\(s\) in in: start at most 1"):
        run_inference(specs, "in", "out", torch.device("cpu"), InferenceOptions(), Dist(0, 2, 0, "gloo"))
    assert not (folder / "out").exists()

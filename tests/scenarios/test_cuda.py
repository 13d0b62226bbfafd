"""The CUDA path: skipped without a GPU, run on a GPU machine with ``pytest -m cuda``."""

import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import main as train_script
from conftest import FIXTURES, ROOT, load_script, run_cli, tiny_model
from utils.core.runtime import set_tf32
from utils.data.images import read_rgb

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]
REF = FIXTURES / "inference_reference"


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * torch.log10(1 / torch.mean((a.float() - b.float()) ** 2)).item()


def test_forward_matches_the_cpu_and_autocast_keeps_quality():
    model = tiny_model(seed=3, wf=16, depth=4)
    image = torch.from_numpy(read_rgb(next((REF / "test_input_img").glob("*.png")))[:256, :256]).permute(2, 0, 1)
    image = (image.float() / 255)[None]
    with torch.inference_mode():
        cpu = model(image)[1]
        gpu_model = model.cuda()
        set_tf32(False)
        fp32 = gpu_model(image.cuda())[1].float().cpu()
        assert (fp32 - cpu).abs().max().item() <= 1e-4
        for dtype in (torch.bfloat16, torch.float16):
            with torch.autocast("cuda", dtype=dtype):
                out = gpu_model(image.cuda())[1].float().cpu()
            assert _psnr(out, fp32) >= 40, dtype


def test_submission_on_cuda_matches_the_original(tmp_path, monkeypatch, capsys):
    (tmp_path / "weights").mkdir()
    for name in ("256_best.pth", "352_best.pth"):
        shutil.copy(REF / name, tmp_path / "weights" / name)
    shutil.copytree(REF / "test_input_img", tmp_path / "data" / "test_input_img")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(load_script("test"), ["--no_progress", "--device", "cuda"], capsys)
    assert code == 0, err
    for expected in sorted((REF / "expected_submission").glob("*.png")):
        got = cv2.imread(str(tmp_path / "results" / "submission" / expected.name)).astype(int)
        assert np.abs(got - cv2.imread(str(expected)).astype(int)).max() <= 1


def _args(data, results, *extra):
    return [
        "--data_path", data, "--model_path", results, "--img_size", 256, "--wf", 8, "--depth", 3, "--batch_size", 8,
        "--pred_batch", 8, "--num_workers", 2, "--initial_lr", 1e-3, "--no_progress", "--device", "cuda", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_two_epochs_in_each_precision(patch_data, tmp_path, capsys, monkeypatch, precision):
    if precision == "fp16":  # force the GradScaler path
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    amp = [] if precision == "fp32" else ["--amp"]
    code, _, err = run_cli(train_script, _args(patch_data, tmp_path, "--epochs", 2, *amp), capsys)
    assert code == 0, err
    last = torch.load(tmp_path / "001" / "last.pth", weights_only=True)
    assert last["epoch"] == 2 and np.isfinite(last["best_psnr"])
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())


def test_resume_on_cuda_ends_where_an_uninterrupted_run_ends(patch_data, tmp_path, capsys):
    full, split = tmp_path / "full", tmp_path / "split"
    assert run_cli(train_script, _args(patch_data, full, "--epochs", 3), capsys)[0] == 0
    assert run_cli(train_script, _args(patch_data, split, "--epochs", 3, "--run_epochs", 1), capsys)[0] == 0
    assert run_cli(train_script, _args(patch_data, split, "--epochs", 3, "--resume"), capsys)[0] == 0
    a = torch.load(full / "001" / "last.pth", weights_only=True)
    b = torch.load(split / "001" / "last.pth", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3 and a["best_epoch"] == b["best_epoch"]
    for key, tensor in a["state_dict"].items():  # cuDNN's backward is not bit-deterministic
        assert torch.allclose(tensor, b["state_dict"][key], atol=1e-4), key


def test_torchrun_with_nccl(patch_data, tmp_path):
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", str(ROOT / "main.py"),
        *map(str, _args(patch_data, tmp_path, "--epochs", 2)),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 process(es) on cuda:0 (nccl)" in result.stderr
    assert (tmp_path / "001" / "256_best.pth").is_file()

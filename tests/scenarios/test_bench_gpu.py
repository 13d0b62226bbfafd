"""The GPU report's quick form on the CPU: every section runs and reports what it measured."""

import json

import cv2
import numpy as np
import pytest
import torch

from bench import bench_gpu
from conftest import tiny_model
from utils.core.tiling import count_tiles


def _demo_root(root):
    """What `make demo` leaves that the report reads: two checkpoints and a labelled test image."""
    (root / "weights").mkdir(parents=True)
    for seed, size in enumerate((256, 352)):
        model = tiny_model(seed=seed)
        torch.save(
            {"state_dict": model.state_dict(), "model_config": model.config.to_dict()},
            root / "weights" / f"{size}_best.pth",
        )
    for kind in ("input", "label"):
        (root / "data" / f"test_{kind}_img").mkdir(parents=True)
        img = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "data" / f"test_{kind}_img" / f"test_{kind}_1.png"), img)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_report_on_the_cpu(tmp_path):
    _demo_root(tmp_path / "demo")
    data = bench_gpu.main(
        ["--quick", "--device", "cpu", "--out", str(tmp_path / "out"), "--demo", str(tmp_path / "demo")]
    )
    tmp_path = tmp_path / "out"
    assert json.loads((tmp_path / "gpu_report.json").read_text()) == json.loads(json.dumps(data))
    markdown = (tmp_path / "gpu_report.md").read_text()
    for section in ("environment", "correctness", "inference", "training"):
        assert f"## {section}" in markdown
    assert data["environment"]["torch"].startswith("2.")
    assert data["correctness"]["fp32_vs_cpu_max_abs"] == 0.0  # the same CPU computes both
    assert 40 < data["correctness"]["bf16_psnr_vs_fp32"] < 200
    inference = data["inference"]
    assert inference["tiles_per_image"] == count_tiles(120, 150, 64, 16, "stride_aware") + count_tiles(
        120, 150, 96, 24, "stride_aware"
    )
    assert inference["fp32_benchmark_off_max_grey_diff_vs_fp32"] == 0
    assert inference["bf16_benchmark_off_max_grey_diff_vs_fp32"] <= 2
    assert inference["forward_share_bf16"] > 0  # a ratio of two timings: noise can take it past 1
    assert all(v > 0 for k, v in data["training"].items() if k.endswith("samples_per_s"))
    assert "wf4_b2_bf16_loader_0_workers_samples_per_s" in data["training"]
    assert {"wf4_b2_fp32_in_memory_samples_per_s", "wf4_b2_tf32_in_memory_samples_per_s"} <= set(data["training"])
    sweep = data["inference sweep"]  # on a CPU, the eager rows only; the first is test.py's default
    assert sweep["tiles_per_image"] == inference["tiles_per_image"]
    assert set(sweep) == {"tiles_per_image", "16+32_channels-last_eager_seconds", "16+32_channels-last_eager_first_seconds",
                          "32+32_channels-last_eager_seconds", "32+32_channels-last_eager_first_seconds"}  # fmt: skip
    assert "| 32+32 | channels-last | eager |" in markdown and "| 0 |" in markdown  # same tiles, same output
    whole = data["whole image"]
    assert whole["global_seconds"] > 0 and whole["local_seconds"] > 0 and whole["image"] == "120x150"
    assert data["end to end"]["default_seconds_per_image"] > 0
    demo = data["demo accuracy"]
    assert demo["tf32_psnr"] == demo["fp32_psnr"]  # no TF32 on a CPU
    assert abs(demo["bf16_psnr"] - demo["fp32_psnr"]) < 1


def test_whole_image_bench_compares_every_variant_on_the_same_images(tmp_path, monkeypatch):
    from bench import bench_whole_image

    _demo_root(tmp_path)
    monkeypatch.chdir(tmp_path)
    rows = bench_whole_image.measure(
        ["weights/256_best.pth", "weights/352_best.pth"], tmp_path / "data/test_input_img",
        tmp_path / "data/test_label_img", "cpu",
    )  # fmt: skip
    assert [r[0] for r in rows] == ["unrestored input", *bench_whole_image.VARIANTS]
    assert all(np.isfinite(r[1]) and 0 < r[2] <= 1 and r[3] > 0 for r in rows[1:])  # (the input is its label here)
    assert rows[3][1] == rows[4][1]  # these tiny models have no HIN level: local statistics change nothing
    assert not list(tmp_path.glob("results*"))  # the variants' outputs went to a temporary folder

"""Seam-free blending, the seam measure and ensemble weights fitted on held-out images."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from conftest import load_script, run_cli, tiny_model
from utils.core.tiling import TILE_MODES, Tiling, restore_image, tile_starts
from utils.data.folds import Pair
from utils.infer.ensemble import choose_weights, evidence, weight_grid
from utils.metrics import seam_ratio, tile_borders

test_script = load_script("test")


@pytest.mark.parametrize("mode", TILE_MODES)
@pytest.mark.parametrize("tta", [False, True])
def test_window_weights_sum_to_one(mode, tta):
    """An identity model restores any image exactly: every pixel's weights are normalised."""
    image = torch.rand(3, 70, 93)
    constant = torch.full((3, 70, 93), 0.37)
    for img in (image, constant):
        out = restore_image(lambda b: b, img, Tiling(32, 12, 5, mode, "window"), tta)
        assert torch.allclose(out, img, atol=1e-6)
    small = torch.rand(3, 20, 25)  # smaller than a tile: one padded tile, flat window
    assert torch.allclose(restore_image(lambda b: b, small, Tiling(32, 12, 5, mode, "window"), tta), small, atol=1e-6)


def _grid(h, w, tile=16, stride=8):
    rows = tile_borders(h, tile, tile_starts(h, tile, stride, "all"))
    cols = tile_borders(w, tile, tile_starts(w, tile, stride, "all"))
    return rows, cols


def test_seam_measure_sees_planted_steps_and_not_smooth_images():
    h, w = 64, 80
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = (120 + 60 * np.sin(yy / 25) * np.cos(xx / 30))[..., None].repeat(3, 2)
    rows, cols = _grid(h, w)
    assert 0.8 < seam_ratio(smooth, rows, cols) < 1.25
    stepped = smooth.copy()
    for p in cols:
        stepped[:, p:] += 3.0 * (1 if (p // 8) % 2 else -1)  # a small step at every tile border
    for p in rows:
        stepped[p:] += 3.0 * (1 if (p // 8) % 2 else -1)
    assert seam_ratio(stepped, rows, cols) > 2.5
    assert np.isnan(seam_ratio(smooth[:10, :10], [], []))


def test_window_blend_removes_the_seams_of_a_real_model():
    """Tiles of a (random) HINet differ near their borders; the window hides it, the mean does not."""
    model = tiny_model(seed=1, wf=8, depth=3).eval()
    yy, xx = np.mgrid[0:96, 0:128]
    image = torch.from_numpy(np.stack([0.5 + 0.3 * np.sin(yy / 13 + c) * np.cos(xx / 17) for c in range(3)])).float()
    rows = tile_borders(96, 32, tile_starts(96, 32, 16, "stride_aware"))
    cols = tile_borders(128, 32, tile_starts(128, 32, 16, "stride_aware"))
    with torch.inference_mode():
        seams = {}
        for blend in ("mean", "window"):
            out = restore_image(lambda b: model(b)[1], image, Tiling(32, 16, 16, "stride_aware", blend))
            seams[blend] = seam_ratio((out.permute(1, 2, 0).numpy() * 255), rows, cols)
    assert seams["mean"] > 1.5 and 0.85 < seams["window"] < 1.1, seams


def test_weight_grid():
    two, three = weight_grid(2), weight_grid(3)
    assert len(two) == 21 and len(three) == 231
    assert all(abs(sum(w) - 1) < 1e-9 and min(w) >= 0 for w in two + three)
    assert (0.4, 0.6) in two


def test_fit_finds_the_planted_best_weights(tmp_path):
    """Model a is off by +d and model b by -2d: 2/3 a + 1/3 b is exact, 0.65/0.35 the best on the grid."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(3):
        clean = rng.integers(60, 190, (24, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(tmp_path / f"in{i}.png"), clean)
        cv2.imwrite(str(tmp_path / f"clean{i}.png"), clean)
        pairs.append(Pair(tmp_path / f"in{i}.png", tmp_path / f"clean{i}.png"))
    delta = torch.from_numpy(rng.normal(0, 0.08, (3, 24, 32))).float()

    def planted(rgb):
        clean = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
        return [clean + delta, clean - 2 * delta]

    fit = choose_weights(evidence(planted, pairs, 2, progress=False), 2)
    assert fit.weights == [0.65, 0.35]
    scores = dict((tuple(w), p) for w, p in fit.grid)
    assert fit.psnr == max(scores.values()) > scores[(0.4, 0.6)] + 10


@pytest.fixture
def fit_layout(tmp_path, monkeypatch):
    """Two tiny checkpoints, a test folder and a training set with a fold CSV."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    for seed, name in ((0, "256_best.pth"), (1, "352_best.pth")):
        m = tiny_model(seed=seed)
        torch.save(
            {"state_dict": m.state_dict(), "model_config": m.config.to_dict(), "img_size": 32},
            tmp_path / "weights" / name,
        )
    rng = np.random.default_rng(1)
    src = tmp_path / "data" / "train_original"
    for folder in ("train_input_img", "train_label_img"):
        (src / folder).mkdir(parents=True)
    rows = ["img_id,input_img,label_img,fold"]
    for i in range(4):
        img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        cv2.imwrite(str(src / "train_input_img" / f"train_input_{i}.png"), img)
        cv2.imwrite(str(src / "train_label_img" / f"train_label_{i}.png"), cv2.GaussianBlur(img, (5, 5), 2))
        rows.append(f"{i},train_input_{i}.png,train_label_{i}.png,{i % 2}")
    (src / "train_10fold.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "data" / "test_input_img").mkdir()
    cv2.imwrite(
        str(tmp_path / "data" / "test_input_img" / "test_input_1.png"),
        rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
    )
    return tmp_path


TINY = ["--tile_sizes", 32, 32, "--strides", 16, 16, "--batch_sizes", 4, 4, "--no_progress"]


def test_fit_weights_end_to_end(fit_layout, capsys):
    code, out, err = run_cli(test_script, [*TINY, "--fit_weights", "--blend", "window"], capsys)
    assert code == 0, err
    fit = json.loads((fit_layout / "results" / "submission" / "ensemble.json").read_text())
    assert fit["images"] == 2 and len(fit["grid"]) == 21
    assert fit["psnr"] == max(p for _, p in fit["grid"])
    assert f"fitted: validation PSNR {fit['psnr']:.3f} dB" in out and "validation PSNR (dB) per weight" in out
    header = (fit_layout / "results" / "submission" / "metrics.csv").read_text().splitlines()[0]
    assert header == "image,seam_1_32,seam_2_32"  # two models of one tile size keep apart
    code, out, _ = run_cli(test_script, [*TINY, "--fit_weights", "--ensemble_weights", 1, 3, "--overwrite"], capsys)
    assert code == 0 and "no weights are fitted" in out and "ensemble weights 0.25/0.75" in out


FIT_BAD = {
    "one model": (["--weights", "weights/256_best.pth", "--tile_sizes", 32, "--fit_weights"], "needs at least two checkpoints"),
    "no fold CSV": (["--fit_weights", "--fit_data", "data/elsewhere"], r"train_10fold\.csv does not exist .* --fit_input_dir"),
    "empty fold": (["--fit_weights", "--fit_fold", 7], r"--fit_fold 7 has no images"),
    "the test set": (["--fit_weights", "--fit_input_dir", "data/test_input_img", "--fit_label_dir", "data/test_input_img"], "must not fit on the test images"),
    "half a folder pair": (["--fit_weights", "--fit_input_dir", "data/test_input_img"], "go together"),
    "weights per model": (["--ensemble_weights", 1], r"--ensemble_weights has 1 values for 2 checkpoint"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FIT_BAD))
def test_fit_bad_input(fit_layout, capsys, case):
    argv, message = FIT_BAD[case]
    tiny = TINY if "--tile_sizes" not in argv else ["--no_progress"]
    code, _, err = run_cli(test_script, [*tiny, *argv], capsys)
    assert code == 2 and err.count("\n") == 1
    assert pytest.importorskip("re").search(message, err), err
    assert not (fit_layout / "results").exists()


def test_unknown_blend_is_refused(fit_layout, capsys):
    code, _, err = run_cli(test_script, [*TINY, "--blend", "gaussian"], capsys)
    assert code == 2 and "--blend gaussian is not available; choose one of mean, window" in err
    assert not (fit_layout / "results").exists()
    shutil.rmtree(fit_layout / "weights")

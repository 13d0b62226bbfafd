"""Whole-image restoration and local statistics (TLC) for the half instance normalisation."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import tiny_model
from models.local_norm import LocalInstanceNorm, local_mean_var, use_local_stats
from utils.core.tiling import Tiling, count_tiles, restore_image, restore_whole, tile_starts


def _direct(x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance pixel by pixel, each over its window shifted inside the map."""
    h, w = x.shape[-2:]
    kh, kw = min(window, h), min(window, w)
    mean, var = torch.empty_like(x), torch.empty_like(x)
    for i in range(h):
        for j in range(w):
            top, left = min(max(i - kh // 2, 0), h - kh), min(max(j - kw // 2, 0), w - kw)
            patch = x[..., top : top + kh, left : left + kw].double()
            mean[..., i, j] = patch.mean(dim=(-2, -1)).float()
            var[..., i, j] = patch.var(dim=(-2, -1), unbiased=False).float()
    return mean, var


def test_per_pixel_statistics_equal_a_direct_computation():
    x = torch.randn(1, 2, 9, 13) * 3 + 1
    for window in (1, 4, 5, 9, 40):
        mean, var = local_mean_var(x, window)
        want_mean, want_var = _direct(x, window)
        assert torch.allclose(mean, want_mean, atol=1e-5) and torch.allclose(var, want_var, atol=1e-4), window


def test_a_window_as_large_as_the_map_is_plain_instance_norm_and_a_constant_stays_constant():
    norm = nn.InstanceNorm2d(3, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 3, 12, 10)
    assert torch.allclose(LocalInstanceNorm(norm, 12)(x), norm(x), atol=1e-5)
    assert not torch.allclose(LocalInstanceNorm(norm, 4)(x), norm(x), atol=1e-3)
    constant = torch.full((1, 3, 12, 10), 0.7)
    out = LocalInstanceNorm(norm, 4)(constant)
    assert torch.allclose(out, norm.bias[None, :, None, None].expand_as(out), atol=1e-5)


def test_local_statistics_wider_than_the_image_leave_the_whole_image_pass_unchanged():
    model = tiny_model(hin_position_left=0, hin_position_right=1)  # HIN on levels 0 and 1
    image = torch.rand(3, 40, 56)
    with torch.no_grad():
        plain = restore_whole(lambda b: model(b)[1], image)
        local = copy.deepcopy(model)
        use_local_stats(local, base_size=64)
        assert isinstance(local.down_path_1[1].norm, LocalInstanceNorm) and local.down_path_1[1].norm.window == 32
        wide = restore_whole(lambda b: local(b)[1], image)
        use_local_stats(local, base_size=16)
        narrow = restore_whole(lambda b: local(b)[1], image)
    assert torch.allclose(wide, plain, atol=1e-5)
    assert (narrow - plain).abs().max() > 1e-3  # a window smaller than the image changes the result


def test_full_mode_is_one_pass_that_the_model_pads_itself():
    model = tiny_model()
    image = torch.rand(3, 37, 45)  # not a multiple of the size multiple (4)
    calls = []

    def predict(batch):
        calls.append(batch.shape)
        return model(batch)[1]

    with torch.no_grad():
        out = restore_image(predict, image, Tiling(32, 8, 4, "full"))
        padded = F.pad(image[None], (0, 3, 0, 3), mode="reflect")  # what the model does inside
        want = model(padded)[1][0, :, :37, :45]
        whole = model(torch.rand(2, 3, 40, 48))
    assert calls == [torch.Size([1, 3, 37, 45])] and torch.equal(out, want)
    assert [o.shape for o in whole] == [torch.Size([2, 3, 40, 48])] * 2  # a multiple: nothing padded or cut
    assert count_tiles(37, 45, 32, 8, "full") == 1 and tile_starts(37, 32, 8, "full") == [0]
    with torch.no_grad():
        tta = restore_image(lambda b: model(b)[1], image, Tiling(32, 8, 4, "full"), tta=True)
    assert tta.shape == image.shape and torch.isfinite(tta).all()


@pytest.mark.parametrize("size", [(1, 3, 5, 7), (1, 1, 1, 1)])
def test_tiny_maps(size):
    x = torch.rand(size)
    mean, var = local_mean_var(x, 3)
    assert mean.shape == x.shape and (var >= 0).all()


def test_test_py_restores_whole_images_with_local_statistics(tmp_path, capsys):
    import cv2
    import numpy as np

    from conftest import load_script, run_cli

    model = tiny_model(hin_position_left=0, hin_position_right=1)
    ckpt = tmp_path / "m.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 16}, ckpt)
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 56), (33, 47)]):
        cv2.imwrite(str(tmp_path / "in" / f"test_input_{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    outputs = {}
    for name, extra in {"plain": [], "wide": ["--local_stats", 10], "narrow": ["--local_stats", 0.5]}.items():
        argv = ["--weights", ckpt, "--input_dir", tmp_path / "in", "--output_dir", tmp_path / name,
                "--tile_mode", "full", "--no_zip", "--no_progress", *extra]  # fmt: skip
        code, _, err = run_cli(load_script("test"), argv, capsys)
        assert code == 0, err
        outputs[name] = [cv2.imread(str(tmp_path / name / f"test_{i}.png")) for i in range(2)]
    assert all(o.shape[:2] == s for o, s in zip(outputs["plain"], [(40, 56), (33, 47)], strict=True))
    assert all((a == b).all() for a, b in zip(outputs["plain"], outputs["wide"], strict=True))  # window > image
    assert any((a != b).any() for a, b in zip(outputs["plain"], outputs["narrow"], strict=True))

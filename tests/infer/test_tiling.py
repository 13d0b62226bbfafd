import pytest
import torch

from conftest import tiny_model
from utils.core.tiling import Tiling, count_tiles, restore_image, restore_tiled, tile_grid, tile_starts


@pytest.mark.parametrize(
    "tile, stride, mode, expected",
    [(256, 64, "stride_aware", 1728), (256, 64, "all", 1989), (352, 96, "stride_aware", 736), (352, 96, "all", 884)],
)
def test_contest_tile_counts(tile, stride, mode, expected):
    assert len(tile_grid(2448, 3264, tile, stride, mode)) == expected
    assert count_tiles(2448, 3264, tile, stride, mode) == expected


def test_starts_per_mode():
    assert tile_starts(600, 256, 128, "all") == [0, 128, 256, 384, 512]
    assert tile_starts(600, 256, 128, "stride_aware") == [0, 128, 256, 384]  # 384 + 256 reaches 600
    assert tile_starts(600, 256, 128, "shift") == [0, 128, 256, 344]  # last tile touches the border
    for mode in ("stride_aware", "shift"):
        assert tile_starts(100, 256, 64, mode) == [0]  # smaller than a tile: one padded tile
    assert tile_starts(100, 256, 64, "all") == [0, 64]  # every start inside the image, as the original
    for mode in ("stride_aware", "all", "shift"):
        assert tile_starts(512, 256, 256, mode) == [0, 256]
    with pytest.raises(ValueError):
        tile_starts(10, 4, 2, "diagonal")


def _naive_restore(predict, image, tile, stride, mode):
    """Straightforward reference: pad each tile separately, predict one at a time, count votes per pixel."""
    c, h, w = image.shape
    acc = torch.zeros(c, h, w)
    votes = torch.zeros(c, h, w)
    for y, x in tile_grid(h, w, tile, stride, mode):
        piece = torch.zeros(c, tile, tile)
        part = image[:, y : y + tile, x : x + tile]
        piece[:, : part.shape[1], : part.shape[2]] = part
        out = predict(piece[None])[0]
        acc[:, y : y + tile, x : x + tile] += out[:, : part.shape[1], : part.shape[2]]
        votes[:, y : y + tile, x : x + tile] += 1
    return acc / votes


@pytest.mark.parametrize("mode", ["stride_aware", "all", "shift"])
def test_batched_restore_matches_naive_loop(mode):
    model = tiny_model(seed=1)
    with torch.no_grad():
        predict = lambda b: model(b)[1]  # noqa: E731
        image = torch.rand(3, 70, 90)
        fast = restore_tiled(predict, image, Tiling(32, 24, 5, mode))
        slow = _naive_restore(predict, image, 32, 24, mode)
    assert fast.shape == image.shape
    assert torch.allclose(fast, slow, atol=1e-6)


@pytest.mark.parametrize("mode", ["stride_aware", "all", "shift"])
def test_identity_prediction_reproduces_image(mode):
    image = torch.rand(3, 45, 61)
    batches = []
    out = restore_tiled(lambda b: b, image, Tiling(16, 12, 7, mode), on_batch=batches.append)
    assert torch.allclose(out, image, atol=1e-6)
    assert sum(batches) == count_tiles(45, 61, 16, 12, mode)  # every tile, the last partial batch included


def test_shift_mode_never_pads():
    seen = []

    def predict(batch):
        seen.append(batch)
        return batch

    image = torch.rand(3, 50, 70) + 0.5  # strictly positive: a padded pixel would be 0
    restore_tiled(predict, image, Tiling(32, 20, 4, "shift"))
    assert all(b.min() > 0 for b in seen)


def test_tta_is_flip_equivariant():
    model = tiny_model(seed=2)
    predict = lambda b: model(b)[1]  # noqa: E731
    image = torch.rand(3, 32, 64)
    with torch.no_grad():
        plain = restore_image(predict, image, Tiling(32, 32, 4, "shift"), tta=False)
        tta = restore_image(predict, image, Tiling(32, 32, 4, "shift"), tta=True)
        tta_flipped = restore_image(predict, image.flip(-1), Tiling(32, 32, 4, "shift"), tta=True)
    assert not torch.allclose(plain, tta, atol=1e-4)
    assert torch.allclose(tta_flipped.flip(-1), tta, atol=1e-5)

"""--min_change: the small changes a model makes away from the glare are dropped, the large ones kept."""

import torch

from utils.infer.restore import drop_small_changes, smoothed

LEVEL = 1 / 255


def test_small_changes_are_dropped_and_large_ones_shrink_by_as_much():
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    restored = image - 2 * LEVEL  # a colour shift of two levels everywhere
    restored[:, 16:48, 24:64] = image[:, 16:48, 24:64] - 40 * LEVEL  # the glare, removed
    kept = drop_small_changes(image, restored, 4)
    assert torch.equal(kept[:, :4], image[:, :4])  # away from the glare: the input exactly
    assert torch.allclose((image - kept)[:, 32, 44] / LEVEL, torch.full((3,), 36.0), atol=0.1)  # 40 less 4
    shift = (image - drop_small_changes(image, restored, 0.5))[:, :4] / LEVEL  # over half a level: kept, less 0.5
    assert torch.allclose(shift, torch.full_like(shift, 1.5), atol=1e-3)


def test_a_change_is_judged_with_its_neighbourhood():
    """A single pixel changed by 30 levels (a texture, a speck) is small once smoothed: dropped; the same change
    over a patch of glare is kept."""
    image = torch.full((3, 40, 40), 0.5)
    speck = image.clone()
    speck[:, 20, 20] -= 30 * LEVEL
    assert torch.equal(drop_small_changes(image, speck, 4), image)
    patch = image.clone()
    patch[:, 10:30, 10:30] -= 30 * LEVEL
    assert (drop_small_changes(image, patch, 4)[:, 20, 20] < 0.5 - 25 * LEVEL).all()


def test_smoothing_keeps_a_flat_image_and_any_size():
    flat = torch.full((1, 3, 2), 0.7)
    assert torch.allclose(smoothed(flat, 3.0), flat)  # the border repeated: no darkening at the edges
    dot = torch.zeros(1, 31, 31)
    dot[0, 15, 15] = 1
    blurred = smoothed(dot, 3.0)
    assert abs(float(blurred.sum()) - 1) < 1e-3 and float(blurred.max()) < 0.02  # spread, nothing lost

"""--min_change: the small changes a model makes away from the glare are dropped, the large ones kept."""

import torch

from utils.infer.restore import drop_small_changes

LEVEL = 1 / 255


def test_small_changes_are_dropped_and_large_ones_shrink_by_as_much():
    image = torch.rand(3, 64, 80, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    restored = image - 2 * LEVEL  # a colour shift of two levels everywhere
    restored[:, 16:48, 24:64] = image[:, 16:48, 24:64] - 40 * LEVEL  # the glare, removed
    kept = drop_small_changes(image, restored, 4)
    assert torch.equal(kept[:, :4], image[:, :4])  # away from the glare: the input exactly
    assert torch.allclose((image - kept)[:, 32, 44] / LEVEL, torch.full((3,), 36.0), atol=1e-3)  # 40 less 4
    shift = (image - drop_small_changes(image, restored, 0.5))[:, :4] / LEVEL  # over half a level: kept, less 0.5
    assert torch.allclose(shift, torch.full_like(shift, 1.5), atol=1e-3)


def test_a_thin_streak_removed_stays_removed():
    """A streak one pixel wide, removed by 40 levels, keeps 36 of them: the change is judged where it is."""
    image = torch.full((3, 40, 40), 0.3)
    image[:, 20, :] += 40 * LEVEL
    restored = torch.full((3, 40, 40), 0.3)
    kept = drop_small_changes(image, restored, 4)
    assert torch.allclose((image - kept)[:, 20] / LEVEL, torch.full((3, 40), 36.0), atol=1e-3)
    assert torch.equal(kept[:, :20], image[:, :20])


def test_the_other_channels_shrink_in_proportion():
    """The largest channel loses the levels asked for, the others as much in proportion: the hue is kept."""
    image = torch.full((3, 1, 1), 0.5)
    restored = image - torch.tensor([40.0, 10.0, 0.0]).view(3, 1, 1) * LEVEL
    change = (drop_small_changes(image, restored, 4) - image).flatten() / LEVEL
    assert torch.allclose(change, torch.tensor([-36.0, -9.0, 0.0]), atol=1e-3)

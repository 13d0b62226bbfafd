"""--work_size: a photo is restored as a smaller copy, and the copy's correction is applied at full size."""

from pathlib import Path

import numpy as np
import pytest
import torch

from utils.infer.options import InferenceOptions, ModelSpec
from utils.infer.restore import Model, corrected, restore, working_copy
from utils.infer.restorer import Restorer


class Darkens(torch.nn.Module):
    """A stand-in model that removes a constant 0.1 and records the sizes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.seen.append(tuple(x.shape[-2:]))
        return [x, x - 0.1]


def _checkerboard(height: int, width: int) -> torch.Tensor:
    """Fine detail (one-pixel squares) on a mid-grey: what a plain downscale and upscale would lose."""
    board = (np.indices((height, width)).sum(0) % 2).astype(np.float32)
    return torch.from_numpy(0.4 + 0.3 * board).expand(3, height, width).contiguous()


def test_the_working_copy_has_the_long_side_asked_for():
    image = torch.rand(3, 40, 60)
    assert working_copy(image, 30).shape == (3, 20, 30)
    assert working_copy(image, 60) is image and working_copy(image, 0) is image


def test_a_correction_of_nothing_keeps_every_pixel_and_a_constant_one_moves_every_pixel():
    image = _checkerboard(40, 60)
    small = working_copy(image, 30)
    assert torch.equal(corrected(image, small, small), image)  # the detail survives, unlike a resize round trip
    darker = corrected(image, small, small - 0.1)
    assert torch.allclose(darker, image - 0.1, atol=1e-6)


@pytest.mark.parametrize("work_size", [0, 32])
def test_restore_sees_the_small_copy_and_returns_the_full_size(work_size):
    image = _checkerboard(48, 64)
    model = Darkens()
    spec = ModelSpec(Path("m.pth"), tile=16, stride=16, batch_size=64, weight=1.0)
    opts = InferenceOptions(tile_mode="full", work_size=work_size, progress=False)
    out = restore(image, [Model(spec, Restorer(model, torch.device("cpu"), channels_last=False))], opts)
    assert out.shape == image.shape
    assert torch.allclose(out, image - 0.1, atol=1e-6)  # full-size detail kept, the correction applied
    assert max(max(s) for s in model.seen) == (32 if work_size else 64)

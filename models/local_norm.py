"""Local statistics for half instance normalisation, for restoring a whole image in one pass.

HINet learns its instance-norm statistics on training patches (256 or 352 pixels). Over a
whole 2448x3264 photograph the mean and variance of a feature map are those of a far larger,
more varied area, and the normalised features drift from what the network was trained on.
Test-time local statistics (TLC, Chu et al., ECCV 2022) compute them instead over a window
about the size the network saw in training: ``base_size`` pixels of the image, which is
``base_size / 2**level`` pixels of a feature map at encoder level ``level``.

Border rule: every window has the full size and lies inside the map; near a border it is
shifted inward (as a tile is), so each pixel's statistics come from exactly ``k x k`` values.
A window as large as the map (or larger) is the map itself, and the result equals plain
instance normalisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _window_sums(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """Sum of ``x`` (N, C, H, W) over the ``kh x kw`` window of each pixel, shifted inside the map."""
    h, w = x.shape[-2:]
    table = F.pad(x.double().cumsum(-2).cumsum(-1), (1, 0, 1, 0))  # summed-area table, float64 for long sums
    tops = (torch.arange(h, device=x.device) - kh // 2).clamp(0, h - kh)
    lefts = (torch.arange(w, device=x.device) - kw // 2).clamp(0, w - kw)
    bottoms, rights = tops + kh, lefts + kw
    rows_b, rows_t = table[..., bottoms, :], table[..., tops, :]
    return rows_b[..., rights] - rows_t[..., rights] - rows_b[..., lefts] + rows_t[..., lefts]


def local_mean_var(x: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel mean and (biased) variance of ``x`` over a ``window``-sized square, as ``x``'s dtype."""
    kh, kw = min(window, x.shape[-2]), min(window, x.shape[-1])
    count = kh * kw
    mean = _window_sums(x, kh, kw) / count
    var = (_window_sums(x.double() ** 2, kh, kw) / count - mean**2).clamp_min(0)
    return mean.to(x.dtype), var.to(x.dtype)


class LocalInstanceNorm(nn.Module):
    """An affine ``InstanceNorm2d`` whose statistics come from a local window instead of the whole map."""

    def __init__(self, norm: nn.InstanceNorm2d, window: int) -> None:
        super().__init__()
        self.norm, self.window = norm, max(1, window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean, var = local_mean_var(x, self.window)
        out = (x - mean) / torch.sqrt(var + self.norm.eps)
        if self.norm.affine:
            out = out * self.norm.weight[:, None, None] + self.norm.bias[:, None, None]
        return out


def use_local_stats(model: nn.Module, base_size: int) -> nn.Module:
    """Give every HIN block of a HINet local statistics over ``base_size`` image pixels (in place; returns it).

    A block at encoder level ``level`` sees feature maps ``2**level`` times smaller than the image.
    Called again, it sets the new size.
    """
    for path in (model.down_path_1, model.down_path_2):
        for level, block in enumerate(path):
            if not getattr(block, "use_hin", False):
                continue
            norm = block.norm.norm if isinstance(block.norm, LocalInstanceNorm) else block.norm
            block.norm = LocalInstanceNorm(norm, base_size // 2**level)
    return model

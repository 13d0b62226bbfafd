"""Tile geometry and tiled restoration, shared by validation, test.py and the benchmarks.

Three ways to place tiles of size ``t`` with stride ``s`` along an axis of length ``L``:

* ``all`` — ``0, s, 2s, ...`` while the start is inside the image (the original's
  validation). The last tiles can be mostly zero padding.
* ``stride_aware`` — the same starts, up to and including the first one whose tile
  reaches the border, ``ceil((L - t) / s) * s`` (the original's test.py). Later
  starts, whose tiles would be mostly padding, are skipped.
* ``shift`` — ``0, s, ...`` up to ``L - t``, plus ``L - t`` itself when the grid
  stops short of the border, so no tile needs padding at all (as long as ``L >= t``).

Tiles are zero-padded where they overhang the image, restored, cropped back and
blended where they overlap:

* ``mean`` — every tile counts equally (the original). Each tile's output differs near its
  own border, where the network saw zero padding, so each tile border becomes a faint step.
* ``window`` — each tile is weighted by a separable raised-cosine (Hann) window,
  ``sin^2(pi (i + 0.5) / tile)``, so a tile's border pixels count least and the neighbour that
  sees them in its centre takes over. A side that touches or overhangs the image border
  has no neighbour to take over, so the window is flat (1) on that half; a tile larger
  than the image is therefore flat everywhere, as with ``mean``. The weights never reach
  zero, and the blend divides by their sum, so any covered pixel is restored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TILE_MODES = ("stride_aware", "all", "shift", "full")
BLENDS = ("mean", "window")


@dataclass(frozen=True)
class Tiling:
    """How one model's tiles are laid and blended: tiles of ``tile`` pixels every ``stride``, ``batch_size`` per
    forward pass, starts placed as ``mode`` says and overlaps blended as ``blend`` says (module notes)."""

    tile: int
    stride: int
    batch_size: int
    mode: str = "stride_aware"
    blend: str = "mean"


def tile_starts(length: int, tile: int, stride: int, mode: str = "stride_aware") -> list[int]:
    """Start offsets along one axis; always at least one start, so small images are still covered."""
    if tile <= 0 or stride <= 0:
        raise ValueError("tile and stride must be positive")
    if mode == "all":
        return list(range(0, length, stride))
    if mode == "stride_aware":
        last = max(0, math.ceil((length - tile) / stride) * stride)
        return list(range(0, last + 1, stride))
    if mode == "full":  # the whole image in one pass: one "tile" from 0
        return [0]
    if mode == "shift":
        if length <= tile:
            return [0]
        starts = list(range(0, length - tile + 1, stride))
        if starts[-1] + tile < length:
            starts.append(length - tile)
        return starts
    raise ValueError(f"unknown tile mode {mode!r}; choose one of {', '.join(TILE_MODES)}")


def tile_grid(height: int, width: int, tile: int, stride: int, mode: str = "stride_aware") -> list[tuple[int, int]]:
    """All (top, left) tile positions in row-major order."""
    return [(y, x) for y in tile_starts(height, tile, stride, mode) for x in tile_starts(width, tile, stride, mode)]


def axis_windows(
    length: int, tile: int, starts: list[int], blend: str, device: torch.device | str = "cpu"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The 1-D weight of each tile along one axis, and their sum over the padded axis.

    The grid is the product of the two axes' starts, so a 2-D tile weight is the outer
    product of two of these and the 2-D sum is the outer product of the two sums.
    """
    padded = max(length, starts[-1] + tile)
    if blend == "mean":
        windows = [torch.ones(tile, device=device) for _ in starts]
    elif blend == "window":
        hann = torch.sin(torch.pi * (torch.arange(tile, dtype=torch.float64) + 0.5) / tile) ** 2
        variants: dict[tuple[bool, bool], torch.Tensor] = {}  # shared, so that callers can cache by identity
        windows = []
        for start in starts:
            sides = (start == 0, start + tile >= length)
            if sides not in variants:
                w = hann.clone()
                if sides[0]:
                    w[: tile // 2] = 1  # no tile before this one
                if sides[1]:
                    w[tile // 2 :] = 1  # no tile after this one
                variants[sides] = w.float().to(device)
            windows.append(variants[sides])
    else:
        raise ValueError(f"unknown blend {blend!r}; choose one of {', '.join(BLENDS)}")
    total = torch.zeros(padded, device=device)
    for start, w in zip(starts, windows, strict=True):
        total[start : start + tile] += w
    return windows, total


def gather_tiles(padded: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, tile: int) -> torch.Tensor:
    """Cut a batch of tiles from a (C, H, W) tensor in one indexing operation: (B, C, tile, tile)."""
    offsets = torch.arange(tile, device=padded.device)
    rows = (tops[:, None] + offsets)[:, :, None]  # (B, t, 1)
    cols = (lefts[:, None] + offsets)[:, None, :]  # (B, 1, t)
    return padded[:, rows, cols].permute(1, 0, 2, 3)


def restore_tiled(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tiling: Tiling,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Restore a (C, H, W) image in [0, 1] tile by tile; returns a float32 (C, H, W) tensor.

    ``predict`` maps a (B, C, tile, tile) batch to restored tiles of the same shape.
    Every tile is predicted, the last partial batch included. ``on_batch`` is told
    how many tiles each batch held (for progress bars).
    """
    channels, height, width = image.shape
    tile, stride, mode, blend = tiling.tile, tiling.stride, tiling.mode, tiling.blend
    tops = tile_starts(height, tile, stride, mode)
    lefts = tile_starts(width, tile, stride, mode)
    pad_bottom = max(0, tops[-1] + tile - height)
    pad_right = max(0, lefts[-1] + tile - width)
    padded = F.pad(image, (0, pad_right, 0, pad_bottom)) if pad_bottom or pad_right else image

    acc = torch.zeros((channels, height + pad_bottom, width + pad_right), dtype=torch.float32, device=image.device)
    row_windows, row_total = axis_windows(height, tile, tops, blend, image.device)
    col_windows, col_total = axis_windows(width, tile, lefts, blend, image.device)
    weight = torch.outer(row_total[:height], col_total[:width])
    if weight.min() == 0:  # a stride larger than the tile: refuse rather than return black pixels
        raise ValueError(f"tiles of {tile} with stride {stride} leave pixels uncovered")
    row_of, col_of = dict(zip(tops, row_windows)), dict(zip(lefts, col_windows))
    weights: dict[tuple[int, int], torch.Tensor] = {}
    grid = torch.tensor(tile_grid(height, width, tile, stride, mode), device=image.device)
    for first in range(0, len(grid), tiling.batch_size):
        batch_pos = grid[first : first + tiling.batch_size]
        out = predict(gather_tiles(padded, batch_pos[:, 0], batch_pos[:, 1], tile)).float()
        for (y, x), piece in zip(batch_pos.tolist(), out, strict=True):
            if blend != "mean":  # the mean needs no multiply: keeps the original's arithmetic exactly
                key = (id(row_of[y]), id(col_of[x]))  # at most four distinct windows per axis
                if key not in weights:
                    weights[key] = torch.outer(row_of[y], col_of[x])
                piece = piece * weights[key]
            acc[:, y : y + tile, x : x + tile] += piece
        if on_batch is not None:
            on_batch(len(batch_pos))
    return acc[:, :height, :width] / weight


# The eight flip/rotation variants of the dihedral group, as (rotations by 90 degrees, horizontal flip).
DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _forward_variant(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, k, dims=(-2, -1))


def _inverse_variant(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def restore_image(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tiling: Tiling,
    tta: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """One model's restoration of a (C, H, W) image: tiled, or whole with ``tiling.mode`` ``full``; with ``tta``,
    the mean over the eight flip/rotation variants (each restored and turned back)."""
    variants = DIHEDRAL if tta else [(0, False)]
    total = None
    for k, flip in variants:
        variant = _forward_variant(image, k, flip)
        if tiling.mode == "full":
            restored = restore_whole(predict, variant, on_batch)
        else:
            restored = restore_tiled(predict, variant, tiling, on_batch)
        restored = _inverse_variant(restored, k, flip)
        total = restored if total is None else total + restored
    return total / len(variants)


def restore_whole(
    predict: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The whole (C, H, W) image in one forward pass (the model pads it to its size multiple itself)."""
    out = predict(image[None]).float()[0]
    if on_batch is not None:
        on_batch(1)
    return out


def count_tiles(height: int, width: int, tile: int, stride: int, mode: str, tta: bool = False) -> int:
    """How many tiles (forward passes' worth of tiles) one restoration of an image takes, TTA variants included."""
    n = len(tile_starts(height, tile, stride, mode)) * len(tile_starts(width, tile, stride, mode))
    return n * (len(DIHEDRAL) if tta else 1)

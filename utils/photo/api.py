"""``restore_image``: a photo in, the photo without its glare out, for any Python program.

restore.py and its web page call the same two functions: ``photo_models`` (the model, loaded once and kept)
and ``restore_rgb`` (test.py's restoration of one image, with the photo options of ``PhotoSettings``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from utils.core.errors import fail
from utils.core.runtime import choose_device
from utils.core.settings import check_ranges
from utils.infer.keep_lights import out_of_reach
from utils.infer.options import InferenceOptions, ModelSpec, stored_tile
from utils.infer.restore import Model, load_models, restore_rgb
from utils.photo.settings import PhotoSettings, find_weights
from utils.recipe import recipe_for


def photo_options(settings: PhotoSettings) -> InferenceOptions:
    """test.py's options as photos want them: window-blended tiles (no grid), the working size, no bars."""
    return InferenceOptions(
        blend="window",
        work_size=settings.work_size,
        keep_lights=settings.keep_lights,
        lamp_edge=settings.lamp_edge,
        darken_only=settings.darken_only,
        floor_radius=settings.floor_radius,
        min_change=settings.min_change,
        light_reach=settings.light_reach,
        make_zip=False,
        progress=False,
    )


def unchanged_note(rgb: np.ndarray, settings: PhotoSettings) -> str:
    """A sentence for a photo the model was not run on, since ``--light_reach`` would drop every change it made
    (the photo has no clipped lights); "" otherwise."""
    if out_of_reach(rgb, settings.light_reach):
        return "no clipped lights, so the model left it unchanged (the file is only encoded again)"
    return ""


def photo_models(settings: PhotoSettings) -> list[Model]:
    """The model of ``settings.weights`` on its device, loaded once per file and device: a page or a loop over
    photos pays for loading once. Tiles of the patch size it was trained on, overlapping by half."""
    problems = check_ranges(settings)
    if problems:
        fail(problems[0] + ".")
    path = find_weights(settings.weights).resolve()
    return list(_loaded(path, path.stat().st_mtime_ns, str(choose_device(settings.device))))


@lru_cache(maxsize=2)
def _loaded(path: Path, mtime_ns: int, device: str) -> tuple[Model, ...]:
    tile = stored_tile(path) or 256
    spec = ModelSpec(path, tile, max(1, tile // 2), recipe_for(tile).tile_batch, 1.0)
    return tuple(load_models([spec], choose_device(device), InferenceOptions()))


def restore_image(
    image: np.ndarray,
    weights: str | Path | None = None,
    *,
    work_size: int = PhotoSettings.work_size,
    keep_lights: bool = PhotoSettings.keep_lights,
    lamp_edge: float = PhotoSettings.lamp_edge,
    darken_only: bool = PhotoSettings.darken_only,
    floor_radius: float = PhotoSettings.floor_radius,
    min_change: float = PhotoSettings.min_change,
    light_reach: float = PhotoSettings.light_reach,
    device: str = "auto",
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """The (H, W, 3) uint8 RGB ``image`` restored: its glare and flare removed, the rest of the photo kept.

    ``weights``: a checkpoint (the shipped starter model when None); ``work_size``: the long side of the copy
    the model sees (0: full size); ``keep_lights``: blend the clipped light cores back, with a soft edge of
    ``lamp_edge`` of each core's diameter; ``darken_only``: no pixel brighter than the photo's (flare only adds
    light); ``floor_radius``: no pixel darker than about the darkest of the photo within this share of its long
    side (fewer dark rings); ``min_change``: changes smaller than this many 8-bit
    levels dropped, larger ones made smaller by as much; ``light_reach``: changes kept only within this share of
    the long side from a clipped light (0: everywhere); ``on_progress``: called with the share done, from 0 to
    1. Raises ``ValueError`` for an image of another shape or type, and ``utils.core.errors.UserError`` (one
    sentence) for a checkpoint that cannot be found or read.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"restore_image takes an (H, W, 3) uint8 RGB array, not a {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"restore_image takes an image with pixels, not one of shape {image.shape}")
    image = np.ascontiguousarray(image)  # a flipped or strided view (img[:, ::-1]) as torch takes it
    settings = PhotoSettings(
        work_size=work_size,
        keep_lights=keep_lights,
        lamp_edge=lamp_edge,
        darken_only=darken_only,
        floor_radius=floor_radius,
        min_change=min_change,
        light_reach=light_reach,
        device=device,
    )
    if weights is not None:
        settings = replace(settings, weights=str(weights))
    return restore_rgb(image, photo_models(settings), photo_options(settings), on_progress=on_progress)

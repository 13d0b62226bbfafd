"""What metrics.csv says of each restored image: each model's seam measure, and with ``test.py --eval_dir`` the
scores against the clean targets.

PSNR and SSIM of the input, each model and the ensemble over the whole image; where glare and
streak masks lie beside the clean images (the layout ``scripts.flare_data --masks`` writes), the
PSNR over each mask too: ``gpsnr_*`` over the glare region, ``spsnr_*`` over the streaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.core.errors import fail
from utils.core.tiling import tile_starts
from utils.data.images import inspect_image, read_mask, read_rgb
from utils.data.layout import MASK_KINDS, mask_folder, mask_name
from utils.infer.options import ModelSpec
from utils.metrics import psnr_masked, psnr_uint8, seam_ratio, ssim_uint8, tile_borders


@dataclass(frozen=True)
class Labels:
    """What the inputs are scored against (``--eval_dir``): the clean image of each input by name, and its
    glare and streak masks where they lie beside the clean images (None where there are none)."""

    targets: dict[str, Path]
    masks: dict[str, dict[str, Path]] | None


def seam_scores(per_model: list[np.ndarray], specs: list[ModelSpec], tile_mode: str) -> dict[str, float]:
    """``seam_<label>``: the seam measure of each model's 8-bit output on its own tile grid."""
    row = {}
    for spec, pred in zip(specs, per_model, strict=True):
        h, w = pred.shape[:2]
        rows = tile_borders(h, spec.tile, tile_starts(h, spec.tile, spec.stride, tile_mode))
        cols = tile_borders(w, spec.tile, tile_starts(w, spec.tile, spec.stride, tile_mode))
        row[f"seam_{spec.label}"] = seam_ratio(pred, rows, cols)
    return row


def label_scores(
    labels: Labels, name: str, rgb: np.ndarray, per_model: list[np.ndarray], out: np.ndarray, specs: list[ModelSpec]
) -> dict:
    """The scores of input ``name`` (``rgb``), each model's output and the ensemble (``out``) against the clean
    image, over the whole image and over each mask where the image has masks."""
    clean = read_rgb(labels.targets[name])
    row = quality_row(rgb, per_model, out, clean, specs)
    if labels.masks is not None:
        row |= region_row(rgb, per_model, out, clean, specs, labels.masks[name])
    return row


def check_masks(eval_dir: Path, images: dict[Path, tuple[int, int]]) -> dict[str, dict[str, Path]] | None:
    """The glare and streak masks of the inputs where they lie beside the clean images (the layout
    ``scripts.flare_data --masks`` writes: test_label_img/ beside test_mask_img/test_glare_<id>.png), each
    readable and of the input's size; None where there are none. An input may have no mask: its region
    scores stay empty."""
    folder = mask_folder(eval_dir)
    if folder is None or not folder.is_dir():
        return None
    masks: dict[str, dict[str, Path]] = {}
    for p, (h, w) in images.items():
        found = {kind: folder / mask_name(p.name, kind) for kind in MASK_KINDS}
        masks[p.name] = {kind: path for kind, path in found.items() if path.is_file()}
        for path in masks[p.name].values():
            size, problem = inspect_image(path)
            if problem is not None:
                fail(f"--eval_dir masks: {problem}; mend or remove it, or move the folder {folder} away.")
            if size != (h, w):
                fail(f"mask {path} is {size[1]}x{size[0]} but the input {p.name} is {w}x{h}.")
    return masks if any(masks.values()) else None


def quality_row(rgb: np.ndarray, per_model: list[np.ndarray], out: np.ndarray, clean: np.ndarray, specs) -> dict:
    """PSNR and SSIM of the input, each model and the ensemble against the clean image."""
    row = {"psnr_input": psnr_uint8(rgb, clean), "ssim_input": ssim_uint8(rgb, clean)}
    for spec, pred in zip(specs, per_model, strict=True):
        row[f"psnr_{spec.label}"] = psnr_uint8(pred, clean)
        row[f"ssim_{spec.label}"] = ssim_uint8(pred, clean)
    row["psnr_ensemble"] = psnr_uint8(out, clean)
    row["ssim_ensemble"] = ssim_uint8(out, clean)
    return row


def region_row(rgb: np.ndarray, per_model: list[np.ndarray], out: np.ndarray, clean: np.ndarray, specs,
               masks: dict[str, Path]) -> dict:  # fmt: skip
    """PSNR over the glare mask (``gpsnr_*``) and over the streak mask (``spsnr_*``) of the input, each model and
    the ensemble; None where the image has no such mask, NaN where its mask is empty."""
    scored = {"input": rgb, **{s.label: pred for s, pred in zip(specs, per_model, strict=True)}, "ensemble": out}
    row = {}
    for kind, prefix in (("glare", "gpsnr"), ("streak", "spsnr")):
        mask = read_mask(masks[kind]) if kind in masks else None
        row |= {
            f"{prefix}_{name}": None if mask is None else psnr_masked(img, clean, mask) for name, img in scored.items()
        }
    return row

"""Patch extraction for training: the original's rules, exactly, with every input checked first.

For each training pair and growth step ``i`` (1..``patch_growth_count``) a crop size
and stride are chosen (``i == 1``: the flags; ``i == 2``: 512/256; ``i >= 3``:
``img_size * i`` / ``stride * i``). Crops of the training size (``crop == resize``)
follow the *base rule*: a grid from 0 while inside the image, zero-padded at the
border, kept only if the input crop has at least ``v_threshold`` pixels whose HSV
value (the channel maximum) exceeds 200. Larger crops follow the *larger rule*: a
grid whose last crop is shifted to touch the border, all kept, resized bicubically
to ``resize``.

The brightness test uses a summed-area table of the bright-pixel mask, so every
window is counted at once instead of colour-converting each crop.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.core.errors import fail
from utils.core.locks import atomic_path, output_lock
from utils.core.log import progress_bar
from utils.core.manifest import add_to_manifest
from utils.core.owned import Output, owned_output
from utils.core.settings import check_ranges
from utils.core.tiling import tile_starts
from utils.core.workers import TaskFailed, WorkerDied, run_tasks
from utils.data.images import read_bgr
from utils.data.layout import FOLD_CSV, INFO_FILE, dataset_problem, patch_folder
from utils.data.patch_settings import BRIGHT_VALUE, PatchPaths, PatchRun, PatchSettings, check_inputs

PNG_COMPRESSION = 3


def bright_counts(img_bgr: np.ndarray, tops: list[int], lefts: list[int], crop: int) -> np.ndarray:
    """Pixels with HSV value > 200 in each (top, left) crop, clipped to the image: shape (len(tops), len(lefts))."""
    value = np.maximum(np.maximum(img_bgr[..., 0], img_bgr[..., 1]), img_bgr[..., 2])  # HSV value, no conversion
    bright = (value > BRIGHT_VALUE).astype(np.uint8)
    sat = cv2.integral(bright)  # (H+1, W+1) int32
    h, w = bright.shape
    y0 = np.asarray(tops)[:, None]
    x0 = np.asarray(lefts)[None, :]
    y1 = np.minimum(y0 + crop, h)
    x1 = np.minimum(x0 + crop, w)
    return sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]


def _padded_crop(img: np.ndarray, top: int, left: int, crop: int) -> np.ndarray:
    piece = img[top : top + crop, left : left + crop]
    if piece.shape[:2] == (crop, crop):
        return piece
    out = np.zeros((crop, crop, img.shape[2]), dtype=img.dtype)
    out[: piece.shape[0], : piece.shape[1]] = piece
    return out


def _write(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
        raise OSError(f"could not write {path}")


def extract_pair(input_path: Path, target_path: Path, settings: PatchSettings, out_dir: Path) -> dict[int, int]:
    """Write every patch of one training pair for all growth steps; returns patches written per crop size."""
    img = read_bgr(input_path)
    tar = read_bgr(target_path)
    if img.shape != tar.shape:
        raise ValueError(f"input {img.shape[:2]} and target {tar.shape[:2]} differ in size")
    h, w = img.shape[:2]
    counts: dict[int, int] = {}
    in_dir, tar_dir = out_dir / "input", out_dir / "target"
    for crop, stride in settings.growth_steps():
        n = 0
        if crop == settings.resize:
            tops, lefts = tile_starts(h, crop, stride, "all"), tile_starts(w, crop, stride, "all")
            keep = bright_counts(img, tops, lefts, crop) >= settings.v_threshold
            for iy, ix in zip(*np.nonzero(keep), strict=True):
                top, left = tops[iy], lefts[ix]
                _write(in_dir / f"{n:05d}_{input_path.name}", _padded_crop(img, top, left, crop))
                _write(tar_dir / f"{n:05d}_{target_path.name}", _padded_crop(tar, top, left, crop))
                n += 1
        else:
            size = (settings.resize, settings.resize)
            for top in tile_starts(h, crop, stride, "shift"):
                for left in tile_starts(w, crop, stride, "shift"):
                    for src, folder, name in ((img, in_dir, input_path.name), (tar, tar_dir, target_path.name)):
                        piece = np.ascontiguousarray(src[top : top + crop, left : left + crop])
                        _write(
                            folder / f"{n:05d}_{crop}_{name}", cv2.resize(piece, size, interpolation=cv2.INTER_CUBIC)
                        )
                    n += 1
        counts[crop] = n
    return counts


def _worker(task: tuple[Path, Path, PatchSettings, Path]) -> tuple[dict[int, int], list[str]]:
    input_path, target_path, settings, out_dir = task
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = extract_pair(input_path, target_path, settings, out_dir)
    return result, [str(w.message) for w in caught]


def _extract_all(pairs: list[tuple[Path, Path]], settings: PatchSettings, out_dir: Path, run: PatchRun) -> Counter[int]:
    """Run ``extract_pair`` on every pair in worker processes; any failure stops the run naming the image."""
    totals: Counter[int] = Counter()
    sizes = "+".join(str(c) for c, _ in settings.growth_steps())
    names = [i.name for i, _ in pairs]
    tasks = [(i, t, settings, out_dir) for i, t in pairs]
    bar = progress_bar(total=len(tasks), unit="image", desc=f"patches {sizes}->{settings.resize}", show=run.progress)
    try:
        for index, result in run_tasks(_worker, tasks, run.process_num, names):
            if isinstance(result, TaskFailed):
                fail(f"patch extraction failed on {names[index]}: {result}; nothing was written.")
            counts, notes = result
            for note in notes:
                tqdm.write(f"warning: {note}", file=sys.stderr)
            totals.update(counts)
            bar.update(1)
            bar.set_postfix({str(k): v for k, v in sorted(totals.items())})
    except WorkerDied as err:
        fail(f"{err}; it may have run out of memory: lower --process_num and run again. Nothing was written.")
    finally:
        bar.close()
    return totals


def make_patches(settings: PatchSettings, paths: PatchPaths, run: PatchRun) -> PatchResult:
    """Write the fold CSV and the patch folder; returns what was made (also saved as ``patch_info.json``)."""
    input_dir, target_dir, csv_dir = Path(paths.input_path), Path(paths.target_path), Path(paths.csv_path)
    df, pairs = check_inputs(settings, input_dir, target_dir, csv_dir)
    problems = check_ranges(run)
    if problems:
        fail("; ".join(problems) + ".")
    overwrite, dataset = run.overwrite, paths.dataset

    fold_csv = csv_dir / FOLD_CSV
    new_csv = df.to_csv(index=False)
    csv_changes = not (fold_csv.is_file() and fold_csv.read_text() == new_csv)
    if fold_csv.exists() and csv_changes and not overwrite:
        fail(
            f"{fold_csv} holds another split (other --folds or train.csv); pass --overwrite to replace it and re-make every patch folder."
        )
    if csv_changes and (fold_csv.is_dir() or not os.access(csv_dir, os.W_OK | os.X_OK)):
        fail(f"{fold_csv} cannot be written; make {csv_dir} writable or pass another --csv_path.")
    if problem := dataset_problem(dataset):
        fail(problem + ".")
    out_dir = patch_folder(paths.save_path, settings.valid_fold, settings.resize, dataset)
    protected = {"input folder": input_dir, "target folder": target_dir, "csv folder": csv_dir}
    out = Output(out_dir, "patches", "patch folder", "make_patch.py", overwrite, protected)
    fold_lock = output_lock(fold_csv, "fold table") if csv_changes else nullcontext()
    with fold_lock, owned_output(out) as tmp_dir:  # the patches replace the real folder on success
        info = _fill_patch_folder(tmp_dir, pairs, settings, run)
        if csv_changes:
            with atomic_path(fold_csv) as tmp:
                tmp.write_text(new_csv)
            add_to_manifest(csv_dir, [FOLD_CSV])
    return PatchResult(out_dir, info["images"], info["patches_per_crop"], info["total"])


@dataclass(frozen=True)
class PatchResult:
    """What make_patch.py made (also in the folder's ``patch_info.json``, with the settings)."""

    folder: Path
    images: int
    patches_per_crop: dict[str, int]  # crop size -> patches kept
    total: int


def _fill_patch_folder(tmp_dir: Path, pairs, settings: PatchSettings, run: PatchRun) -> dict:
    """Cut every pair into ``tmp_dir``/input and /target and write ``patch_info.json``; zero patches is an error."""
    (tmp_dir / "input").mkdir()
    (tmp_dir / "target").mkdir()
    totals = _extract_all(pairs, settings, tmp_dir, run)
    info = {
        "settings": asdict(settings),
        "images": len(pairs),
        "patches_per_crop": {str(k): totals.get(k, 0) for k, _ in settings.growth_steps()},
        "total": sum(totals.values()),
    }
    if info["total"] == 0:
        fail(
            f"no patch was kept from {len(pairs)} images (no crop has {settings.v_threshold} pixels brighter than "
            f"{BRIGHT_VALUE}); lower --v_threshold or raise --patch_growth_count; nothing was replaced."
        )
    (tmp_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return info

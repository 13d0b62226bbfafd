"""Ensemble weights fitted on held-out labelled images, never on the test set.

Each model restores each validation image once; every weight combination on a grid
(step 0.05, weights summing to 1) is then scored from those outputs, so fitting costs one
restoration per model and image, however many combinations are tried.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

from utils.data import FOLD_CSV, Pair, held_out_pairs, read_fold_csv
from utils.errors import fail
from utils.image_io import inspect_image, list_images, read_rgb, to_uint8
from utils.logger import progress_bar
from utils.metrics import psnr_uint8

GRID_STEP = 0.05


def weight_grid(models: int, step: float = GRID_STEP) -> list[tuple[float, ...]]:
    """Every combination of ``models`` non-negative weights in multiples of ``step`` that sums to 1."""
    units = round(1 / step)
    combos = [c for c in itertools.product(range(units + 1), repeat=models - 1) if sum(c) <= units]
    return [tuple(round(k * step, 10) for k in (*c, units - sum(c))) for c in combos]


def validation_pairs(
    data_dir: str | Path, fold: int, input_dir: str | Path | None, label_dir: str | Path | None, test_dir: Path
) -> list[Pair]:
    """The held-out images to fit on: a folder pair, or fold ``fold`` of the fold CSV make_patch.py wrote."""
    if (input_dir is None) != (label_dir is None):
        fail("--fit_input_dir and --fit_label_dir go together: give both folders, or neither to use the fold CSV.")
    if input_dir is not None:
        inputs = list_images(input_dir)
        labels = {p.name: p for p in list_images(label_dir)}
        pairs = [Pair(p, labels.get(p.name) or labels.get(p.name.replace("input", "label"))) for p in inputs]
        missing = [p.input.name for p in pairs if p.target is None]
        if missing:
            fail(f"--fit_label_dir {label_dir} has no clean image for {missing[0]}.")
    else:
        fold_csv = Path(data_dir) / FOLD_CSV
        if not fold_csv.is_file():
            fail(
                f"--fit_weights needs held-out labelled images: {fold_csv} does not exist (make_patch.py writes it); "
                f"run make_patch.py, point --fit_data at its folder, or pass --fit_input_dir and --fit_label_dir."
            )
        folds = read_fold_csv(fold_csv)
        pairs = held_out_pairs(folds, data_dir, fold)
        if not pairs:
            fail(f"--fit_fold {fold} has no images in {fold_csv}; choose a fold between 0 and {folds['fold'].max()}.")
    for pair in pairs:
        if pair.input.resolve().parent == test_dir.resolve():
            fail("--fit_weights must not fit on the test images; give held-out training images instead.")
        sizes = []
        for path in (pair.input, pair.target):
            size, problem = inspect_image(path) if path.is_file() else (None, f"{path} does not exist")
            if problem is not None:
                fail(f"--fit_weights: {problem}.")
            sizes.append(size)
        if sizes[0] != sizes[1]:
            fail(f"--fit_weights: {pair.input.name} and {pair.target.name} differ in size.")
    return pairs


def fit_weights(restore, pairs: list[Pair], models: int, progress: bool = True) -> dict:
    """Search the weight grid; ``restore(rgb) -> list of (3, H, W) float tensors``, one per model.

    Returns ``{"weights", "psnr", "grid": [(weights, psnr), ...]}`` with the best mean PSNR.
    """
    grid = weight_grid(models)
    scores = np.zeros((len(grid), len(pairs)))
    for j, pair in enumerate(progress_bar(pairs, desc="fitting weights", unit="image", show=progress)):
        outputs = torch.stack(restore(read_rgb(pair.input)))
        clean = read_rgb(pair.target)
        for i, weights in enumerate(grid):
            mixed = torch.tensordot(torch.tensor(weights, dtype=outputs.dtype, device=outputs.device), outputs, 1)
            scores[i, j] = psnr_uint8(to_uint8(mixed), clean)
    means = scores.mean(axis=1)
    best = int(np.argmax(means))
    return {
        "weights": list(grid[best]),
        "psnr": float(means[best]),
        "grid": [(list(w), float(m)) for w, m in zip(grid, means)],
    }

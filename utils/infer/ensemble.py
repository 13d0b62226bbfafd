"""Ensemble weights fitted on held-out labelled images, never on the test set.

Each model restores each validation image once, so fitting costs one restoration per model
and image, however many combinations are tried. Two models: every weight pair on a grid
(step 0.05, weights summing to 1) is scored exactly from those outputs. Three or more: the
full grid grows too fast (888,030 points for 8 models), so a coordinate descent walks the
same grid, moving 0.05 of weight from one model to another while that helps, on scores
computed from each image's products of outputs and target (``image_products``), which cost
nothing per candidate whatever the image size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from utils.core.errors import fail
from utils.core.log import progress_bar
from utils.data.copies import all_identical, find_copy
from utils.data.folds import Pair, held_out_pairs, read_fold_csv
from utils.data.images import inspect_image, list_images, read_rgb, to_uint8
from utils.data.layout import FOLD_CSV
from utils.metrics import psnr_uint8

GRID_STEP = 0.05
Outputs = Callable[[np.ndarray], list[torch.Tensor]]  # an 8-bit RGB image -> each model's (3, H, W) restoration


@dataclass(frozen=True)
class FitResult:
    """The fitted ensemble weights (test.py's ensemble.json): the weights with the best mean PSNR on the
    held-out images, that PSNR, every point scored on the way as (weights, mean PSNR) (for two models the
    whole grid, scored exactly; for more the points the descent visited, with their estimated PSNR), and
    how many held-out images the fit used."""

    weights: list[float]
    psnr: float
    grid: list[tuple[list[float], float]]
    images: int


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
    pairs = _folder_pairs(input_dir, label_dir) if input_dir is not None else _fold_pairs(Path(data_dir), fold)
    check_fit_pairs(pairs, test_dir)
    return pairs


def _folder_pairs(input_dir: str | Path, label_dir: str | Path) -> list[Pair]:
    """Each image of ``input_dir`` with its clean image of the same name (or ``input`` replaced by ``label``)."""
    inputs = list_images(input_dir)
    if not inputs:
        fail(f"--fit_input_dir {input_dir} holds no images; --fit_weights needs held-out degraded images there.")
    labels = {p.name: p for p in list_images(label_dir)}
    if not labels:
        fail(f"--fit_label_dir {label_dir} holds no images; --fit_weights needs the clean image of each input there.")
    pairs = [Pair(p, labels.get(p.name) or labels.get(p.name.replace("input", "label"))) for p in inputs]
    missing = [p.input.name for p in pairs if p.target is None]
    if missing:
        fail(f"--fit_label_dir {label_dir} has no clean image for {missing[0]}.")
    return pairs


def _fold_pairs(data_dir: Path, fold: int) -> list[Pair]:
    """The validation images of fold ``fold`` in the fold CSV under ``data_dir``."""
    fold_csv = data_dir / FOLD_CSV
    if not fold_csv.is_file():
        fail(
            f"--fit_weights needs held-out labelled images: {fold_csv} does not exist (make_patch.py writes it); "
            f"run make_patch.py, point --fit_data at its folder, or pass --fit_input_dir and --fit_label_dir."
        )
    folds = read_fold_csv(fold_csv)
    pairs = held_out_pairs(folds, data_dir, fold)
    if not pairs:
        fail(f"--fit_fold {fold} has no images in {fold_csv}; choose a fold between 0 and {folds['fold'].max()}.")
    return pairs


def check_fit_pairs(pairs: list[Pair], test_dir: Path) -> None:
    """Every pair readable and of one size, no input a test image (by content: a copy in another folder is
    one too), and not every clean image a copy of its input."""
    for pair in pairs:
        sizes = []
        for path in (pair.input, pair.target):
            size, problem = inspect_image(path) if path.is_file() else (None, f"{path} does not exist")
            if problem is not None:
                fail(f"--fit_weights: {problem}.")
            sizes.append(size)
        if sizes[0] != sizes[1]:
            fail(f"--fit_weights: {pair.input.name} and {pair.target.name} differ in size.")
    copy = find_copy([p.input for p in pairs], list_images(test_dir))
    if copy is not None:
        fail(
            f"--fit_weights must not fit on the test images: {copy[0]} holds the same bytes as the test image "
            f"{copy[1]}; give held-out training images instead."
        )
    if all_identical((pair.input, pair.target) for pair in pairs):
        fail(
            f"--fit_weights: every clean image is identical to its input (e.g. {pairs[0].target}), so the fit would "
            f"reward doing nothing; give the folder of the clean images."
        )


def evidence(restore: Outputs, pairs: list[Pair], models: int, progress: bool = True) -> list[np.ndarray]:
    """``image_evidence`` of each pair in turn, with a progress bar (a process's share, under torchrun);
    ``choose_weights`` turns every image's evidence into the weights."""
    bar = progress_bar(pairs, desc="fitting weights", unit="image", show=progress)
    return [image_evidence(restore, pair, models) for pair in bar]


def image_evidence(restore: Outputs, pair: Pair, models: int) -> np.ndarray:
    """What one held-out image tells about the weights: for two models the PSNR of each grid point, for more
    its ``image_products``. Images are independent, so several processes can each take a share."""
    outputs = torch.stack(restore(read_rgb(pair.input)))
    clean = read_rgb(pair.target)
    if models >= 3:
        return image_products(outputs, clean)
    scores = []
    for weights in weight_grid(models):
        mixed = torch.tensordot(torch.tensor(weights, dtype=outputs.dtype, device=outputs.device), outputs, 1)
        scores.append(psnr_uint8(to_uint8(mixed), clean))
    return np.array(scores)


def choose_weights(evidence: list[np.ndarray], models: int) -> FitResult:
    """The weights with the best mean PSNR, from every image's ``image_evidence`` (in a fixed order): for two
    models the best point of the whole grid, for more the end of the descent (``descend``)."""
    if models >= 3:
        return descend(np.stack(evidence), models)
    grid = weight_grid(models)
    means = np.stack(evidence, axis=1).mean(axis=1)
    best = int(np.argmax(means))
    scored = [(list(w), float(m)) for w, m in zip(grid, means)]
    return FitResult(list(grid[best]), float(means[best]), scored, len(evidence))


ROUNDING_MSE = 1 / 12  # mean squared error that rounding to whole grey levels adds (uniform over +-0.5)


def image_products(outputs: torch.Tensor, clean: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """The (models + 1)-square matrix of mean products of the outputs (clamped, in grey levels) and the target.

    The squared error of any weighted mixture follows from it: ``w G w - 2 w g + c`` (``mixture_psnr``).
    Summed in float64, a chunk of pixels at a time (no copy of the whole outputs).
    """
    x = outputs.flatten(1)
    y = torch.from_numpy(np.ascontiguousarray(clean.transpose(2, 0, 1))).to(x.device).flatten()
    gram = torch.zeros(len(x) + 1, len(x) + 1, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], chunk):
        part = torch.cat(
            [x[:, start : start + chunk].double().clamp(0, 1) * 255, y[None, start : start + chunk].double()]
        )
        gram += part @ part.T
    return (gram / x.shape[1]).cpu().numpy()


def mixture_psnr(products: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean PSNR over the images (``products``: one ``image_products`` matrix each) of each row of ``weights``.

    Exact for the unrounded mixture; the rounding to 8 bits adds ``ROUNDING_MSE`` on average.
    """
    w = np.concatenate([weights, -np.ones((len(weights), 1))], axis=1)  # mixture minus target
    mse = np.einsum("ca,kab,cb->ck", w, products, w) + ROUNDING_MSE
    return (10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))).mean(axis=1)


def descend(products: np.ndarray, models: int, step: float = GRID_STEP) -> FitResult:
    """Coordinate descent on the weight grid: from the grid point nearest equal weights, move ``step`` of
    weight from one model to another, the best such move each time, until none improves the mean PSNR.

    Equal weights themselves are kept if they score better (they lie off the grid for most counts).
    Each round scores ``models * (models - 1)`` candidates, each in time independent of the image size.
    """
    units = round(1 / step)
    point = np.full(models, units // models)
    point[: units - point.sum()] += 1
    best = float(mixture_psnr(products, point[None] * step)[0])
    path = [(point * step, best)]
    moves = [(i, j) for i in range(models) for j in range(models) if i != j]
    while True:
        candidates = []
        for i, j in moves:
            if point[i] > 0:
                moved = point.copy()
                moved[i] -= 1
                moved[j] += 1
                candidates.append(moved)
        scores = mixture_psnr(products, np.stack(candidates) * step)
        k = int(np.argmax(scores))
        if scores[k] <= best:
            break
        point, best = candidates[k], float(scores[k])
        path.append((point * step, best))
    weights = point * step
    equal = np.full(models, 1 / models)
    equal_psnr = float(mixture_psnr(products, equal[None])[0])
    if equal_psnr > best:
        weights, best = equal, equal_psnr
        path.append((equal, best))
    scored = [([round(float(w), 10) for w in ws], p) for ws, p in path]
    return FitResult([round(float(w), 10) for w in weights], best, scored, len(products))

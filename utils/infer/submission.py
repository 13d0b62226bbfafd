"""Tiled inference, ensembling, evaluation and the zipped submission (test.py's library)."""

from __future__ import annotations

import json
import re
import time
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from models.local_norm import use_local_stats
from utils.core.checkpoint import load_model
from utils.core.errors import fail, one_line, reported_write
from utils.core.locks import output_lock
from utils.core.log import progress_bar
from utils.core.outputs import check_output_folder, staged_dir
from utils.core.runtime import configure_cuda
from utils.core.settings import check_ranges
from utils.core.tables import write_csv
from utils.data.images import from_uint8, inspect_image, list_images, read_rgb, to_uint8
from utils.infer.ensemble import fit_weights, mix, validation_pairs
from utils.infer.options import InferenceOptions, ModelSpec, check_specs, label_models
from utils.infer.restorer import Restorer
from utils.infer.scores import check_masks, quality_row, region_row
from utils.infer.tiling import count_tiles, restore_image, tile_starts
from utils.metrics import seam_ratio, tile_borders


def submission_name(input_name: str) -> str:
    """``test_input_20000.png`` becomes ``test_20000.png``; other names are kept (as PNG)."""
    stem = Path(input_name).stem
    match = re.fullmatch(r"test_input_(.+)", stem)
    return f"test_{match.group(1)}.png" if match else f"{stem}.png"


def find_target(eval_dir: Path, input_name: str) -> Path | None:
    """The clean image of an input: the same name, or with ``input`` replaced by ``label``."""
    for name in (input_name, input_name.replace("input", "label")):
        if (eval_dir / name).is_file():
            return eval_dir / name
    return None


def check_input_folder(input_dir: Path) -> dict[Path, tuple[int, int]]:
    """Every image of the input folder with its (height, width), each checked to be usable, before any work."""
    if not input_dir.is_dir():
        fail(f"input folder {input_dir} does not exist; put the test images there or pass --input_dir.")
    images = list_images(input_dir)
    if not images:
        fail(f"input folder {input_dir} holds no images (png, jpg, bmp or tif).")
    inspected = {p: inspect_image(p) for p in images}
    problems = [problem for _, problem in inspected.values() if problem is not None]
    if problems:
        fail(f"{len(problems)} input image(s) cannot be used: {'; '.join(problems[:3])}.")
    names: dict[str, str] = {}
    for p in images:
        other = names.setdefault(submission_name(p.name), p.name)
        if other != p.name:
            fail(f"{other} and {p.name} would both be written as {submission_name(p.name)}; rename one of them.")
    return {p: size for p, (size, _) in inspected.items()}


def check_targets(eval_dir: Path, images: dict[Path, tuple[int, int]]) -> dict[str, Path]:
    """The clean image of every input (given with its size), each readable and of the input's size."""
    if not eval_dir.is_dir():
        fail(f"--eval_dir {eval_dir} does not exist.")
    targets = {}
    for p, (h, w) in images.items():
        target = find_target(eval_dir, p.name)
        if target is None:
            fail(f"--eval_dir {eval_dir} has no clean image for {p.name}.")
        if target.resolve() == p.resolve():
            fail(
                f"--eval_dir {eval_dir} is the input folder {p.parent}: each input would be scored against itself "
                f"(a perfect, meaningless score); pass the folder of the clean images."
            )
        size, problem = inspect_image(target)
        if problem is not None:
            fail(f"--eval_dir: {problem}.")
        if size != (h, w):
            fail(f"clean image {target.name} is {size[1]}x{size[0]} but the input {p.name} is {w}x{h}.")
        targets[p.name] = target
    return targets


def run_inference(
    specs: list[ModelSpec], input_dir: str | Path, output_dir: str | Path, device: torch.device, opts: InferenceOptions
) -> InferenceResult:
    """Restore every image of ``input_dir`` with the weighted ensemble of ``specs``; returns a summary.

    Everything that can be checked is checked before the first image. Outputs are built in
    a staging folder that replaces ``output_dir`` only when the whole run succeeded, so a
    failed run leaves no half-written PNG or zip and never mixes runs; a folder holding
    anything but this project's outputs is never replaced.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    problems = check_ranges(opts)
    if problems:
        fail("; ".join(problems) + ".")
    specs = label_models(specs)
    sizes = check_input_folder(input_dir)
    images = list(sizes)
    targets = check_targets(Path(opts.eval_dir), sizes) if opts.eval_dir is not None else None
    masks = check_masks(Path(opts.eval_dir), sizes) if opts.eval_dir is not None else None
    fit_pairs = None
    if opts.fit is not None:
        if len(specs) < 2:
            fail("--fit_weights needs at least two checkpoints in --weights; with one there is nothing to weigh.")
        fit_pairs = validation_pairs(**opts.fit, test_dir=input_dir)
    protected = {"input folder": input_dir, "--eval_dir folder": opts.eval_dir}
    protected |= {f"checkpoint {s.checkpoint}": s.checkpoint for s in specs}
    check_output_folder(output_dir, "--output_dir", opts.overwrite, "submission", protected)
    with output_lock(output_dir, "--output_dir"):
        return _run_locked(specs, images, (targets, masks), fit_pairs, output_dir, device, opts)


@dataclass
class InferenceResult:
    """What a test.py run reports: per-image rows (seams, and scores with labels), their means, the
    models with the weights used, and the fit of the weights where they were fitted."""

    images: int
    output_dir: Path
    seconds: float
    weights: list[float]
    specs: list[ModelSpec]
    rows: list[dict]
    mean: dict[str, float]
    fit: dict | None = None


def _run_locked(specs, images, labels, fit_pairs, output_dir: Path, device: torch.device, opts) -> InferenceResult:
    """run_inference after its checks, with the output folder's lock held; ``labels``: (targets, masks)."""
    loaded = [load_model(s.checkpoint) for s in specs]
    check_specs(specs, [config for _, config, _ in loaded])
    if opts.local_stats:  # the window is in image pixels: a multiple of the size each model was trained on
        for spec, (model, _, _) in zip(specs, loaded, strict=True):
            use_local_stats(model, round(opts.local_stats * spec.tile))
    configure_cuda(device)
    restorers = [Restorer(model, device, opts.amp, compile=opts.compile) for model, _, _ in loaded]
    start, fit = time.perf_counter(), None
    if fit_pairs is not None:
        fit = fit_weights(
            lambda rgb: [restore(s, r, from_uint8(rgb, device), opts) for s, r in zip(specs, restorers, strict=True)],
            fit_pairs,
            len(specs),
            opts.progress,
        )
        fit["images"] = len(fit_pairs)
        specs = [replace(s, weight=w) for s, w in zip(specs, fit["weights"], strict=True)]
    with staged_dir(output_dir, "submission", "test.py") as stage:
        rows = _restore_all(specs, restorers, images, labels, stage, device, opts)
        seconds = time.perf_counter() - start
        if opts.make_zip:
            _write_zip(stage, [submission_name(p.name) for p in images])
        mean = {k: _mean([r[k] for r in rows]) for k in rows[0] if k != "image"}
        write_csv(
            stage / "metrics.csv", [*rows, {"image": "mean", **mean}], list(rows[0]), shown=output_dir / "metrics.csv"
        )
        if fit is not None:
            with reported_write(output_dir / "ensemble.json"):
                (stage / "ensemble.json").write_text(json.dumps(fit, indent=1) + "\n")
    weights = [s.weight / sum(x.weight for x in specs) for s in specs]
    return InferenceResult(len(images), output_dir, seconds, weights, specs, rows, mean, fit)


def _mean(values: list[float | None]) -> float:
    """Mean of the defined values (a seam measure is NaN for an image smaller than a tile; a region score is
    None for an image without that mask, NaN for an empty one)."""
    defined = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def restore(
    spec: ModelSpec, restorer: Restorer, image: torch.Tensor, opts: InferenceOptions, on_batch=None, name: str = ""
) -> torch.Tensor:
    """One model's tiled restoration of one image, as the options say; NaN or infinite output is an error."""
    out = restore_image(
        restorer, image, spec.tile, spec.stride, spec.batch_size, opts.tile_mode, opts.tta, on_batch, opts.blend
    )
    if not bool(torch.isfinite(out).all()):
        where = f"image {name}" if name else "a held-out --fit_weights image"
        fail(
            f"{spec.checkpoint} restored {where} to NaN or infinite values (its weights overflow"
            f"{' in mixed precision; try without --amp' if opts.amp else ''}); nothing was written, so use "
            f"another checkpoint."
        )
    return out


def _write_zip(stage: Path, names: list[str]) -> None:
    try:
        with zipfile.ZipFile(stage / "submission.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(names):
                zf.write(stage / name, arcname=name)
    except OSError as err:
        fail(f"could not write submission.zip ({err.strerror or one_line(err)}); free some space and run again.")


def _each_model(specs, restorers, image: torch.Tensor, name: str, opts: InferenceOptions, per_model: list):
    """Each model's restoration of one image in turn, with a tile bar for large images; its 8-bit copy
    goes to ``per_model`` for the per-model scores."""
    h, w = image.shape[-2:]
    for spec, restorer in zip(specs, restorers, strict=True):
        n_tiles = count_tiles(h, w, spec.tile, spec.stride, opts.tile_mode, opts.tta)
        show = opts.progress and n_tiles >= 64
        with progress_bar(total=n_tiles, unit="tile", leave=False, show=show, desc=f"{name} @{spec.tile}") as tiles:
            restored = restore(spec, restorer, image, opts, tiles.update, name)
        per_model.append(to_uint8(restored))
        yield restored


def _restore_all(specs, restorers, images, labels, stage, device, opts: InferenceOptions) -> list[dict]:
    """Restore, ensemble and write each image; returns per-image seams (and PSNR/SSIM with targets, and
    G-PSNR/S-PSNR with masks: ``labels`` is (targets, masks), either None)."""
    targets, masks = labels
    rows: list[dict] = []
    bar = progress_bar(images, unit="image", desc="restoring", show=opts.progress)
    for path in bar:
        rgb = read_rgb(path)
        per_model: list[np.ndarray] = []
        each = _each_model(specs, restorers, from_uint8(rgb, device), path.name, opts, per_model)
        out = to_uint8(mix(each, [s.weight for s in specs]))
        name = submission_name(path.name)
        if not cv2.imwrite(str(stage / name), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
            fail(f"could not write {name} into the output folder; is the disk full?")
        row: dict = {"image": path.name}
        for spec, pred in zip(specs, per_model, strict=True):
            row[f"seam_{spec.label}"] = model_seam(pred, spec, opts.tile_mode)
        if targets is not None:
            clean = read_rgb(targets[path.name])
            row |= quality_row(rgb, per_model, out, clean, specs)
            if masks is not None:
                row |= region_row(rgb, per_model, out, clean, specs, masks[path.name])
            bar.set_postfix(psnr=f"{row['psnr_input']:.2f}->{row['psnr_ensemble']:.2f}")
        rows.append(row)
        if not bar.disable or not opts.progress:
            continue
        shown = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "image" and v is not None)
        print(f"{path.name}: {shown}", flush=True)
    return rows


def model_seam(pred: np.ndarray, spec: ModelSpec, tile_mode: str) -> float:
    """The seam measure of one model's output on its own tile grid."""
    h, w = pred.shape[:2]
    rows = tile_borders(h, spec.tile, tile_starts(h, spec.tile, spec.stride, tile_mode))
    cols = tile_borders(w, spec.tile, tile_starts(w, spec.tile, spec.stride, tile_mode))
    return seam_ratio(pred, rows, cols)

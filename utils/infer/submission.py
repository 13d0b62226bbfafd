"""Tiled inference, ensembling, evaluation and the zipped submission (test.py's library)."""

from __future__ import annotations

import json
import time
import zipfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from models.local_norm import use_local_stats
from utils.core.checkpoint import load_model
from utils.core.distributed import Dist
from utils.core.errors import UserError, fail, one_line, reported_write
from utils.core.log import progress_bar
from utils.core.owned import Output, owned_output
from utils.core.runtime import configure_cuda
from utils.core.settings import check_ranges
from utils.core.tables import write_csv
from utils.data.images import from_uint8, image_size, read_rgb, to_uint8
from utils.infer.ensemble import choose_weights, evidence, mix, validation_pairs
from utils.infer.inputs import check_input_folder, check_targets, submission_name
from utils.infer.keep_lights import keep_lights
from utils.infer.onnx_model import onnx_restorers
from utils.infer.options import InferenceOptions, ModelSpec, check_specs, label_models
from utils.infer.restorer import Restorer
from utils.infer.scores import check_masks, quality_row, region_row
from utils.infer.shards import agree, from_rank0, in_input_order, my_share, share_results, until_failed
from utils.infer.tiling import count_tiles, restore_image, tile_starts
from utils.metrics import seam_ratio, tile_borders


def run_inference(
    specs: list[ModelSpec],
    input_dir: str | Path,
    output_dir: str | Path,
    device: torch.device,
    opts: InferenceOptions,
    d: Dist | None = None,
) -> InferenceResult:
    """Restore every image of ``input_dir`` with the weighted ensemble of ``specs``; returns a summary.

    Everything that can be checked is checked before the first image. Outputs are built in
    a staging folder that replaces ``output_dir`` only when the whole run succeeded, so a
    failed run leaves no half-written PNG or zip and never mixes runs; a folder holding
    anything but this project's outputs is never replaced. Under torchrun (``d``) each process
    restores a share of the images (``utils.infer.shards``); every process returns the summary.
    """
    d = d or Dist()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    problems = check_ranges(opts)
    if problems:
        fail("; ".join(problems) + ".")
    specs = label_models(specs)
    sizes = check_input_folder(input_dir)
    if d.world > len(sizes):
        fail(
            f"{d.world} processes for {len(sizes)} image(s) in {input_dir}: start at most {len(sizes)} "
            f"(torchrun --nproc_per_node), or restore them in one process."
        )
    targets = check_targets(Path(opts.eval_dir), sizes) if opts.eval_dir is not None else None
    masks = check_masks(Path(opts.eval_dir), sizes) if opts.eval_dir is not None else None
    fit_pairs = None
    if opts.fit is not None:
        if len(specs) < 2:
            fail("--fit_weights needs at least two checkpoints in --weights; with one there is nothing to weigh.")
        fit_pairs = validation_pairs(**opts.fit, test_dir=input_dir)
    protected = {"input folder": input_dir, "--eval_dir folder": opts.eval_dir}
    protected |= {f"checkpoint {s.checkpoint}": s.checkpoint for s in specs}
    out = Output(output_dir, "submission", "--output_dir", "test.py", opts.overwrite, protected)
    with ExitStack() as stack:
        problem, own_stage = None, None
        if d.main:
            try:
                own_stage = stack.enter_context(owned_output(out))
            except UserError as err:
                problem = str(err)
        agree(problem, d, device, "rank 0 took the output folder")
        return _run_locked(specs, sizes, (targets, masks), fit_pairs, (output_dir, own_stage), device, opts, d)


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


def _restorers(specs: list[ModelSpec], device: torch.device, opts: InferenceOptions) -> list[Restorer]:
    """One restorer per checkpoint, loaded and checked against its spec."""
    if opts.backend == "onnxruntime":
        return onnx_restorers(specs, device, opts)
    for spec in specs:
        if spec.checkpoint.suffix.lower() == ".onnx":
            fail(f"{spec.checkpoint} is an ONNX file; pass --backend onnxruntime to restore with it.")
    loaded = [load_model(s.checkpoint) for s in specs]
    check_specs(specs)
    if opts.local_stats:  # the window is in image pixels: a multiple of the size each model was trained on
        for spec, (model, _, _) in zip(specs, loaded, strict=True):
            use_local_stats(model, round(opts.local_stats * spec.tile))
    configure_cuda(device)
    return [Restorer(model, device, opts.amp, compile=opts.compile) for model, _, _ in loaded]


def _run_locked(specs, sizes, labels, fit_pairs, output: tuple, device, opts, d: Dist) -> InferenceResult:
    """run_inference after its checks, with the output folder's lock held by rank 0; ``labels``: (targets, masks);
    ``output``: (the output folder, rank 0's staging folder or None)."""
    output_dir, own_stage = output
    restorers = _restorers(specs, device, opts)
    start, fit = time.perf_counter(), None
    if fit_pairs is not None:
        fit = _fit(specs, restorers, fit_pairs, device, opts, d)
        specs = [replace(s, weight=w) for s, w in zip(specs, fit["weights"], strict=True)]
    images, pixels = list(sizes), [h * w for h, w in sizes.values()]
    stage = Path(from_rank0(str(own_stage), d, device, "rank 0 shared its staging folder"))
    seen = stage.is_dir() or d.main
    agree(None if seen else f"process {d.rank} cannot see the staging folder {stage}; on several machines, "
          f"--output_dir must be on a folder they all share", d, device, "checking the staging folder")  # fmt: skip
    mine = my_share(images, pixels, d)
    work = lambda: _restore_all(specs, restorers, mine, labels, stage, device, opts, d.main)  # noqa: E731
    shares = share_results(work, d, device, "gathering the restored images", stage)
    rows = in_input_order(shares, images, pixels, d.world)
    seconds = time.perf_counter() - start
    mean = {k: _mean([r[k] for r in rows]) for k in rows[0] if k != "image"}
    write = lambda: _write_tables(stage, output_dir, images, rows, mean, fit, opts) if d.main else None  # noqa: E731
    share_results(write, d, device, "rank 0 wrote the tables", stage)
    weights = [s.weight / sum(x.weight for x in specs) for s in specs]
    return InferenceResult(len(images), output_dir, seconds, weights, specs, rows, mean, fit)


def _fit(specs, restorers, pairs, device, opts: InferenceOptions, d: Dist) -> dict:
    """Ensemble weights from the held-out pairs, each process restoring a share; the same choice everywhere."""
    pixels = [int(np.prod(image_size(p.input))) for p in pairs]
    mine = my_share(pairs, pixels, d)

    def restore_all(rgb):
        return [restore(s, r, from_uint8(rgb, device), opts) for s, r in zip(specs, restorers, strict=True)]

    work = lambda: evidence(restore_all, mine, len(specs), opts.progress and d.main)  # noqa: E731
    shares = share_results(work, d, device, "fitting the ensemble weights")
    fit = choose_weights(in_input_order(shares, pairs, pixels, d.world), len(specs))
    return fit | {"images": len(pairs)}


def _write_tables(stage: Path, output_dir: Path, images, rows, mean, fit, opts: InferenceOptions) -> None:
    """Rank 0's part after every image is written: the zip, metrics.csv and ensemble.json, in input order."""
    if opts.make_zip:
        _write_zip(stage, [submission_name(p.name) for p in images])
    write_csv(
        stage / "metrics.csv", [*rows, {"image": "mean", **mean}], list(rows[0]), shown=output_dir / "metrics.csv"
    )
    if fit is not None:
        with reported_write(output_dir / "ensemble.json"):
            (stage / "ensemble.json").write_text(json.dumps(fit, indent=1) + "\n")


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


ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every entry's date: the same images give the same zip, byte for byte


def _write_zip(stage: Path, names: list[str]) -> None:
    try:
        with zipfile.ZipFile(stage / "submission.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(names):
                entry = zipfile.ZipInfo(name, ZIP_TIME)
                entry.compress_type, entry.external_attr = zipfile.ZIP_DEFLATED, 0o644 << 16
                zf.writestr(entry, (stage / name).read_bytes())
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


def _restore_all(specs, restorers, images, labels, stage, device, opts: InferenceOptions, loud: bool) -> list[dict]:
    """Restore, ensemble and write each image; returns per-image seams (and PSNR/SSIM with targets, and
    G-PSNR/S-PSNR with masks: ``labels`` is (targets, masks), either None)."""
    targets, masks = labels
    rows: list[dict] = []
    bar = progress_bar(images, unit="image", desc="restoring", show=opts.progress and loud)
    for path in until_failed(bar, stage):
        rgb = read_rgb(path)
        per_model: list[np.ndarray] = []
        image = from_uint8(rgb, device)
        mixed = mix(_each_model(specs, restorers, image, path.name, opts, per_model), [s.weight for s in specs])
        out = to_uint8(keep_lights(rgb, image, mixed) if opts.keep_lights else mixed)
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
        if not bar.disable or not opts.progress or not loud:
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

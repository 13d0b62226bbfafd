"""test.py's library: the checks before any work, the output folder, the sharing of the images across torchrun
processes around the pixel loop (``utils.infer.restore``), the fitted ensemble weights, metrics.csv and the zip."""

from __future__ import annotations

import json
import time
import zipfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from utils.core.distributed import Dist
from utils.core.errors import UserError, fail, one_line, reported_write
from utils.core.owned import Output, owned_output
from utils.core.settings import check_ranges
from utils.core.tables import write_csv
from utils.data.folds import Pair
from utils.data.images import from_uint8, image_size
from utils.infer.ensemble import FitResult, choose_weights, evidence, validation_pairs
from utils.infer.inputs import check_input_folder, check_targets, submission_name
from utils.infer.options import InferenceOptions, ModelSpec, label_models
from utils.infer.restore import Model, load_models, restore_images, restore_model
from utils.infer.scores import Labels, check_masks
from utils.infer.shards import UntilFailed, agree, from_rank0, in_input_order, my_share, share_results
from utils.metrics import mean_defined


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
    runs the pixel loop (``utils.infer.restore``) on its share of the images (``utils.infer.shards``);
    every process returns the summary.
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
    labels = None
    if opts.eval_dir is not None:
        labels = Labels(check_targets(Path(opts.eval_dir), sizes), check_masks(Path(opts.eval_dir), sizes))
    fit_pairs = None
    if opts.fit is not None:
        if len(specs) < 2:
            fail("--fit_weights needs at least two checkpoints in --weights; with one there is nothing to weigh.")
        fit_pairs = validation_pairs(**opts.fit, test_dir=input_dir)
    inputs = Inputs(sizes, labels, fit_pairs)
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
        return _run_locked(specs, inputs, (output_dir, own_stage), device, opts, d)


@dataclass(frozen=True)
class Inputs:
    """What a run reads, each checked before any work: the images with their (height, width), what they are
    scored against (``--eval_dir``) and the held-out pairs the weights are fitted on (``--fit_weights``)."""

    sizes: dict[Path, tuple[int, int]]
    labels: Labels | None
    fit_pairs: list[Pair] | None


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
    fit: FitResult | None = None


def _run_locked(
    specs: list[ModelSpec], inputs: Inputs, where: tuple, device: torch.device, opts: InferenceOptions, d: Dist
) -> InferenceResult:
    """run_inference after its checks, with the output folder's lock held by rank 0: each process restores its
    share of the images into rank 0's staging folder (``restore_images``); rank 0 writes the tables.
    ``where``: (the output folder, rank 0's staging folder; None in the other processes)."""
    output_dir, own_stage = where
    models = load_models(specs, device, opts)
    start, fit = time.perf_counter(), None
    if inputs.fit_pairs is not None:
        fit = _fit(models, inputs.fit_pairs, device, opts, d)
        models = [replace(m, spec=replace(m.spec, weight=w)) for m, w in zip(models, fit.weights, strict=True)]
    specs = [m.spec for m in models]
    images, pixels = list(inputs.sizes), [h * w for h, w in inputs.sizes.values()]
    stage = Path(from_rank0(str(own_stage), d, device, "rank 0 shared its staging folder"))
    seen = stage.is_dir() or d.main
    agree(None if seen else f"process {d.rank} cannot see the staging folder {stage}; on several machines, "
          f"--output_dir must be on a folder they all share", d, device, "checking the staging folder")  # fmt: skip
    mine = UntilFailed(my_share(images, pixels, d), stage)
    work = lambda: restore_images(mine, models, opts, stage, inputs.labels, opts.progress and d.main)  # noqa: E731
    shares = share_results(work, d, device, "gathering the restored images", stage)
    rows = in_input_order(shares, images, pixels, d.world)
    seconds = time.perf_counter() - start
    mean = {k: mean_defined([r[k] for r in rows]) for k in rows[0] if k != "image"}
    write = lambda: _write_tables(stage, output_dir, rows, mean, fit, opts.make_zip) if d.main else None  # noqa: E731
    share_results(write, d, device, "rank 0 wrote the tables", stage)
    weights = [s.weight / sum(x.weight for x in specs) for s in specs]
    return InferenceResult(len(images), output_dir, seconds, weights, specs, rows, mean, fit)


def _fit(models: list[Model], pairs: list[Pair], device: torch.device, opts: InferenceOptions, d: Dist) -> FitResult:
    """Ensemble weights from the held-out pairs, each process restoring a share; the same choice everywhere."""
    pixels = [int(np.prod(image_size(p.input))) for p in pairs]
    mine = my_share(pairs, pixels, d)

    def each_model(rgb: np.ndarray) -> list[torch.Tensor]:
        return [restore_model(from_uint8(rgb, device), m, opts) for m in models]

    work = lambda: evidence(each_model, mine, len(models), opts.progress and d.main)  # noqa: E731
    shares = share_results(work, d, device, "fitting the ensemble weights")
    return choose_weights(in_input_order(shares, pairs, pixels, d.world), len(models))


def _write_tables(
    stage: Path, output_dir: Path, rows: list[dict], mean: dict, fit: FitResult | None, make_zip: bool
) -> None:
    """Rank 0's part after every image is written: the zip, metrics.csv and ensemble.json, in input order."""
    if make_zip:
        _write_zip(stage, [submission_name(row["image"]) for row in rows])
    write_csv(
        stage / "metrics.csv", [*rows, {"image": "mean", **mean}], list(rows[0]), shown=output_dir / "metrics.csv"
    )
    if fit is not None:
        with reported_write(output_dir / "ensemble.json"):
            (stage / "ensemble.json").write_text(json.dumps(asdict(fit), indent=1) + "\n")


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

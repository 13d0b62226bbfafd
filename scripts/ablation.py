"""The solution's ablation study with one command: which technique buys what.

    make ablation                       (or: python -m scripts.ablation)
    python -m scripts.ablation --quick  (one seed, fewer steps: a first look)

Trains HINet at size 256 with each technique switched on in turn (larger patches, the
brightness threshold, flip/rotate/colour augmentation, adaptive augmentation), then the
larger-patch sets and brightness thresholds with the full recipe, and compares tilings,
single models, the 0.4/0.6 ensemble and TTA on the full recipe's 256 and 352 checkpoints.
Every run uses the scripts and flags a user would type, printed before they run, with the
same number of optimisation steps (``main.py --steps_per_epoch``), model and learning
rate. Writes ``results/ablation/``: ``ablation.csv`` (a row per run), ``ablation.md`` (the
table beside the original's figures) and ``ablation.png``.

Started again, the study continues where it stopped: finished runs are not repeated.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from scripts.ablation_plan import (
    CSV_COLUMNS,
    QUICK,
    STUDY_FILES,
    StudySettings,
    TrainVariant,
    auto_thresholds,
    inference_variants,
    training_variants,
)
from scripts.ablation_report import write_report
from scripts.demo import run
from utils.core.checkpoint import read_checkpoint
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.locks import atomic_path, output_lock
from utils.core.manifest import read_manifest, write_manifest
from utils.core.outputs import check_output_folder, staged_dir
from utils.core.settings import add_settings, from_args, given_settings
from utils.data.folds import read_pairs_csv
from utils.data.layout import INFO_FILE, patch_folder
from utils.data.patches import bright_counts
from utils.infer.tiling import tile_starts
from utils.recipe import recipe_for

SETTINGS_FILE = "study.json"
LOG_FILE = "commands.log"


@dataclass
class Study:
    """The study's settings, folders and finished rows; each finished run is written at once."""

    settings: StudySettings
    data: Path
    out: Path
    rows: list[dict]
    python: str = sys.executable
    verbose: bool = False

    def finished(self, kind: str, variant: str, seed: int) -> dict | None:
        return next(
            (r for r in self.rows if (r["kind"], r["variant"], str(r["seed"])) == (kind, variant, str(seed))), None
        )

    def record(self, row: dict) -> None:
        self.rows.append({k: str(v) for k, v in row.items()})
        with atomic_path(self.out / "ablation.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)

        self.remember()

    def command(self, script: str, *flags: str, output: tuple[Path, str] | None = None) -> None:
        """Print and run one of the project's scripts; its output goes to ``commands.log`` unless verbose.

        ``output``: the folder (and kind) the command writes inside the study, recorded before it runs.
        """
        if output is not None:
            self.remember({output[0]: output[1]})
        device = [] if script == "make_patch.py" else ["--device", self.settings.device]
        try:
            run(
                [self.python, script, *flags, *device, "--no_progress"],
                log=None if self.verbose else self.out / LOG_FILE,
            )
        finally:
            self.remember()

    def remember(self, outputs: dict[Path, str] | None = None) -> None:
        """Record in the study's manifest the files it wrote and the outputs (runs, test folders) nested in it."""
        nested = {p.relative_to(self.out).as_posix(): kind for p, kind in (outputs or {}).items()}
        write_manifest(self.out, "study", "scripts.ablation", STUDY_FILES, nested)


def ensure_data(data: Path, python: str) -> None:
    """Use the data in ``data``; generate the demo set there when it holds none (as ``make demo`` does)."""
    if not (data / "train_original" / "train.csv").is_file():
        run([python, "-m", "scripts.demo_data", "--root", str(data), "--no_progress"])


def brightness_counts(data: Path, size: int = 256) -> np.ndarray:
    """Bright-pixel counts of every training-size crop of the training inputs (the base rule's grid)."""
    from utils.data.images import read_bgr

    counts = []
    for name in read_pairs_csv(data / "train_original" / "train.csv")["input_img"]:
        img = read_bgr(data / "train_original" / "train_input_img" / name)
        h, w = img.shape[:2]
        counts.append(bright_counts(img, tile_starts(h, size, size // 2, "all"), tile_starts(w, size, size // 2, "all"), size).ravel())  # fmt: skip
    return np.concatenate(counts)


def open_study(settings: StudySettings, data: Path, out: Path, overwrite: bool) -> Study:
    """A new study in ``out``, or the one there with the same settings (continued); others are refused."""
    stored_file = out / SETTINGS_FILE
    if stored_file.is_file() and not overwrite and read_manifest(out) is not None:
        stored = json.loads(stored_file.read_text())
        now = json.loads(json.dumps(asdict(settings)))
        if stored != now:
            differ = [f"{k} {stored.get(k)} -> {v}" for k, v in now.items() if stored.get(k) != v]
            fail(
                f"{out} holds a study made with other settings ({'; '.join(differ)}); pass --overwrite to replace "
                f"it, or --out for another folder."
            )
        rows = []
        if (out / "ablation.csv").is_file():
            with open(out / "ablation.csv") as fh:
                rows = list(csv.DictReader(fh))
        print(f"continuing the study in {out}: {len(rows)} finished run(s) are kept")
        return Study(settings, data, out, rows)
    check_output_folder(out, "--out", overwrite, "study", {"data folder": data})
    with staged_dir(out, "study", "scripts.ablation") as stage:  # an earlier study stays until this succeeds
        (stage / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=1))
    return Study(settings, data, out, [])


def make_patches(study: Study, variant: TrainVariant) -> int:
    """Cut the variant's patch set unless a matching one is there; returns its patch count."""
    s, size = study.settings, variant.img_size
    folder = patch_folder(study.data, s.valid_fold, size, variant.dataset)
    wanted = {"img_size": size, "stride": recipe_for(size).patch_stride, "resize": size, "v_threshold": variant.v_threshold,
              "folds": s.folds, "valid_fold": s.valid_fold, "patch_growth_count": variant.growth}  # fmt: skip
    info_file = folder / INFO_FILE
    if not (info_file.is_file() and json.loads(info_file.read_text())["settings"] == wanted):
        original = study.data / "train_original"
        flags = [word for k, v in wanted.items() for word in (f"--{k}", str(v))]
        study.command("make_patch.py", *flags, "--input_path", str(original / "train_input_img"),
                      "--target_path", str(original / "train_label_img"), "--csv_path", str(original),
                      "--save_path", str(study.data), "--dataset", variant.dataset, "--process_num", "2",
                      *(["--overwrite"] if folder.exists() else []))  # fmt: skip
    return int(json.loads(info_file.read_text())["total"])


def run_dir(study: Study, variant: str, seed: int) -> Path:
    return study.out / "runs" / f"{variant}_s{seed}"


def best_checkpoint(study: Study, variant: TrainVariant, seed: int) -> Path:
    return run_dir(study, variant.name, seed) / "001" / f"{variant.img_size}_best.pth"


def train_variant(study: Study, variant: TrainVariant, seed: int) -> dict:
    """Patches, training and the held-out evaluation of one variant and seed; the ablation.csv row."""
    s, start = study.settings, time.time()
    patches = make_patches(study, variant)
    folder = run_dir(study, variant.name, seed)
    last = folder / "001" / "last.pth"
    if not last.is_file() or read_checkpoint(last)["epoch"] < s.epochs:  # else: trained, stopped before its row
        train_run(study, variant, seed, folder, resume=last.is_file())
    with open(folder / "001" / "metrics.csv") as fh:
        val_psnr = max(float(r["val_psnr"]) for r in csv.DictReader(fh))
    scores = evaluate(study, [best_checkpoint(study, variant, seed)], folder / "test", "stride_aware", False)
    return {"kind": "training", "variant": variant.name, "seed": seed, "patches": patches, "steps": s.steps,
            "minutes": f"{(time.time() - start) / 60:.2f}", "val_psnr": f"{val_psnr:.4f}",
            "test_psnr": rounded(scores.get("psnr_ensemble")), "test_ssim": rounded(scores.get("ssim_ensemble"))}  # fmt: skip


def train_run(study: Study, variant: TrainVariant, seed: int, folder: Path, resume: bool) -> None:
    """main.py with the study's recipe; an interrupted run continues from its last.pth."""
    s = study.settings
    study.command(
        "main.py", "--img_size", str(variant.img_size), "--data_path", str(study.data), "--dataset", variant.dataset,
        "--fold", str(s.valid_fold), "--model_path", str(folder), "--exp_num", "1", "--seed", str(seed),
        "--epochs", str(s.epochs), "--steps_per_epoch", str(s.steps_per_epoch), "--batch_size", str(s.batch_size),
        "--wf", str(s.wf), "--depth", str(s.depth), "--initial_lr", str(s.initial_lr), "--min_lr", str(s.min_lr),
        "--restart_epoch", "0", "--patience", str(s.epochs), "--pretrained_path", "none", "--num_workers", "0",
        "--tag", "ablation", *(["--aug_schedule", variant.aug_schedule] if variant.aug_schedule else []),
        "--resume" if resume else "--overwrite", output=(folder / "001", "run"),
    )  # fmt: skip


def rounded(value: str | None) -> str:
    return "" if value in (None, "") else f"{float(value):.4f}"


def evaluate(study: Study, weights: list[Path], out: Path, tile_mode: str, tta: bool) -> dict[str, str]:
    """test.py on the held-out test images; the mean row of its metrics.csv ({} without test labels)."""
    labels = study.data / "test_label_img"
    if not labels.is_dir():
        return {}
    study.command(
        "test.py", "--weights", *map(str, weights), "--input_dir", str(study.data / "test_input_img"),
        "--eval_dir", str(labels), "--output_dir", str(out), "--tile_mode", tile_mode, *(["--tta"] if tta else []),
        "--no_zip", "--overwrite", output=(out, "submission"),
    )  # fmt: skip
    with open(out / "metrics.csv") as fh:
        return next(r for r in csv.DictReader(fh) if r["image"] == "mean")


def inference_rows(study: Study, full: dict[int, TrainVariant], seed: int) -> list[dict]:
    """Each inference variant on the seed's full-recipe 256 and 352 checkpoints (one test.py run per tiling)."""
    weights = [best_checkpoint(study, full[256], seed), best_checkpoint(study, full[352], seed)]
    rows, scores = [], {}
    for variant in inference_variants():
        if study.finished("inference", variant.name, seed):
            continue
        start = time.time()
        if variant.test_run not in scores:
            out = study.out / "inference" / f"s{seed}_{variant.test_run}"
            scores[variant.test_run] = evaluate(study, weights, out, variant.tile_mode, variant.tta)
        mean = scores[variant.test_run]
        rows.append({"kind": "inference", "variant": variant.name, "seed": seed, "patches": "", "steps": "",
                     "minutes": f"{(time.time() - start) / 60:.2f}", "val_psnr": "",
                     "test_psnr": rounded(mean.get(f"psnr_{variant.column}")),
                     "test_ssim": rounded(mean.get(f"ssim_{variant.column}"))})  # fmt: skip
    return rows


def step_seconds(settings: StudySettings) -> float:
    """Seconds per training step at size 256 on this machine, timed on a few steps of the study's model."""
    import torch

    from models.hinet import HINet
    from utils.train.losses import RestorationLoss

    model = HINet(wf=settings.wf, depth=settings.depth)
    optimizer, criterion = torch.optim.Adam(model.parameters()), RestorationLoss()
    x = torch.rand(settings.batch_size, 3, 256, 256)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        criterion(model(x), x).backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


# Seconds a run spends outside its training steps (start-up, patches, validation), per epoch and once;
# a forward pass over one 256x256 tile costs about this share of a training step per sample.
OVERHEAD_PER_RUN, OVERHEAD_PER_EPOCH, FORWARD_SHARE = 20.0, 1.5, 0.4
# The test.py runs per seed, in forward passes over the test images: three tilings, and TTA's eight.
INFERENCE_PASSES = 3 + 8


def test_tiles(data: Path) -> tuple[int, int]:
    """Tiles of 256 and 352 (in 256x256 equivalents) over the held-out test images: (256 model, both models)."""
    from utils.data.images import image_size, list_images
    from utils.infer.tiling import count_tiles

    sizes = [image_size(p) for p in list_images(data / "test_input_img")] if (data / "test_label_img").is_dir() else []
    per_model = [
        sum(count_tiles(h, w, t, recipe_for(t).tile_stride, "stride_aware") for h, w in sizes) * (t / 256) ** 2
        for t in (256, 352)
    ]
    return round(per_model[0]), round(sum(per_model))


def expected_minutes(study: Study, runs: list[tuple[TrainVariant, int]], per_step: float) -> tuple[float, float]:
    """(training runs, inference variants) in minutes, from the time of one training step here."""
    s = study.settings
    tile = per_step / s.batch_size * FORWARD_SHARE
    single, pair = test_tiles(study.data)
    train = sum(s.steps * per_step * (v.img_size / 256) ** 2 + single * tile for v, _ in runs)
    overhead = len(runs) * (OVERHEAD_PER_RUN + s.epochs * OVERHEAD_PER_EPOCH)
    todo = sum(1 for seed in s.seeds for v in inference_variants() if not study.finished("inference", v.name, seed))
    inference = pair * tile * INFERENCE_PASSES * len(s.seeds) * todo / max(1, len(inference_variants()) * len(s.seeds))
    return (train + overhead) / 60, inference / 60


def run_study(study: Study, variants: list[TrainVariant]) -> None:
    """Every unfinished training run, then the inference variants; rows are written as they finish."""
    s = study.settings
    todo = [(v, seed) for v in variants for seed in s.seeds if not study.finished("training", v.name, seed)]
    per_step = step_seconds(s)
    train, infer = expected_minutes(study, todo, per_step)
    print(
        f"{len(todo)} training run(s) of {s.steps} steps ({s.epochs} epochs x {s.steps_per_epoch}), width {s.wf}, "
        f"seeds {', '.join(map(str, s.seeds))}; a step takes {per_step:.2f} s here, so expect about {train:.0f} min "
        f"of training and {infer:.0f} min of inference variants.",
        flush=True,
    )
    start = time.time()
    for i, (variant, seed) in enumerate(todo, 1):
        row = train_variant(study, variant, seed)
        study.record(row)
        left = (time.time() - start) / i * (len(todo) - i) / 60
        print(f"[{i}/{len(todo)}] {variant.label}, seed {seed}: {row['patches']} patches, validation "
              f"{float(row['val_psnr']):.2f} dB, test {row['test_psnr'] or '-'} dB, {float(row['minutes']):.1f} min; "
              f"about {left:.0f} min of training left", flush=True)  # fmt: skip
    full = {v.img_size: v for v in variants if v.name in ("full", "full352")}
    if len(full) == 2 and (study.data / "test_label_img").is_dir():
        for seed in s.seeds:
            for row in inference_rows(study, full, seed):
                study.record(row)
    elif len(full) == 2:
        print(f"no {study.data / 'test_label_img'}: the inference variants need held-out labels, so they are skipped")


def build_parser() -> argparse.ArgumentParser:
    """The study's settings (``StudySettings``), then where it reads and writes and which runs it makes."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings(p, StudySettings)
    p.add_argument("--data_path", default="data", help="the contest layout; the demo set is made there if empty")
    p.add_argument("--out", default="results/ablation", help="where the study's runs, table and chart go")
    quick = ", ".join(f"--{k} {','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in QUICK.items())
    p.add_argument("--quick", action="store_true", help=f"a first look: {quick} unless given")
    p.add_argument("--only", help="comma-separated training variants to run (default: all; see ablation.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier study made with other settings")
    p.add_argument("--verbose", action="store_true", help="show the output of every command")
    return p


def fitting_variants(variants: list[TrainVariant], data: Path) -> tuple[list[TrainVariant], list[str]]:
    """The variants whose crops fit the training images, and a note for each that does not."""
    from utils.data.images import image_size
    from utils.data.patches import PatchSettings

    original = data / "train_original"
    names = read_pairs_csv(original / "train.csv")["input_img"]
    side = min(min(image_size(original / "train_input_img" / n) or (0, 0)) for n in names)
    kept, notes = [], []
    for v in variants:
        crop = max(c for c, _ in PatchSettings(img_size=v.img_size, stride=recipe_for(v.img_size).patch_stride, resize=v.img_size,
                                                patch_growth_count=v.growth).growth_steps())  # fmt: skip
        if crop <= side:
            kept.append(v)
        else:
            notes.append(f"{v.label}: skipped, its {crop}x{crop} crops do not fit images {side} pixels high or wide")
    return kept, notes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def settings_from(args: argparse.Namespace, given: set[str], data: Path) -> StudySettings:
    """The flags, with ``--quick``'s values where not given, checked; thresholds from the data when none given."""
    settings = from_args(StudySettings, args)
    if args.quick:
        settings = replace(settings, **{k: v for k, v in QUICK.items() if k not in given})
    problems = settings.problems()
    if problems:
        fail("; ".join(problems) + ".")
    if not settings.thresholds:
        settings = replace(settings, thresholds=auto_thresholds(brightness_counts(data)))
    return settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    data, out = Path(args.data_path), Path(args.out)
    ensure_data(data, sys.executable)
    settings = settings_from(args, given_settings(parser, argv), data)
    planned = training_variants(settings.thresholds, settings.growths)
    if args.only:
        unknown = set(args.only.split(",")) - {v.name for v in planned}
        if unknown:
            fail(
                f"--only {args.only}: no variant {sorted(unknown)[0]!r}; the variants are {', '.join(v.name for v in planned)}."
            )
    planned, notes = fitting_variants(planned, data)  # the report's variants: all that fit, --only or not
    for note in notes:
        print(note)
    variants = [v for v in planned if not args.only or v.name in args.only.split(",")]
    if not variants:
        why = f"--only {args.only} names only variants" if args.only else "every variant is"
        side = notes[0].rsplit("fit images ", 1)[-1] if notes else "too small"
        fail(
            f"the study would run nothing: {why} skipped, as their crops do not fit the training images in "
            f"{data / 'train_original'} ({side}); use larger images or other --growths."
        )
    with output_lock(out, "--out"):
        study = open_study(settings, data, out, args.overwrite)
        study.verbose = args.verbose
        started = time.time()
        run_study(study, variants)
        write_report(study.rows, planned, inference_variants(), settings, out, notes)
        study.remember()
    print(f"\nAblation study finished in {(time.time() - started) / 60:.1f} min: {out / 'ablation.md'}, "
          f"{out / 'ablation.png'}, {out / 'ablation.csv'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

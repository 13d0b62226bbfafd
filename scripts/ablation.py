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
from contextlib import ExitStack
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from scripts.ablation_cost import expected_minutes, step_seconds
from scripts.ablation_plan import (
    CSV_COLUMNS,
    QUICK,
    STUDY_FILES,
    StudySettings,
    TrainVariant,
    auto_thresholds,
    brightness_counts,
    fitting_variants,
    inference_variants,
    training_variants,
)
from scripts.ablation_report import write_report
from scripts.ablation_runs import (
    inference_rows,
    train_variant,
)
from scripts.commands import run
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.locks import atomic_path, output_lock
from utils.core.manifest import read_manifest, write_manifest
from utils.core.owned import Output, owned_output
from utils.core.settings import add_settings, from_args, given_settings
from utils.presets import preset_flags

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
    """Use the data in ``data``; generate there, when it holds none, the set the documented study used."""
    if not (data / "train_original" / "train.csv").is_file():
        run([python, "-m", "scripts.flare_data", *preset_flags("ablation", "scripts.flare_data", {"root": data, "progress": False})])  # fmt: skip


def open_study(settings: StudySettings, data: Path, out: Path, overwrite: bool, held: ExitStack) -> Study:
    """A new study in ``out``, or the one there with the same settings (continued); others are refused. Its
    lock joins ``held``: the study goes on writing in place."""
    stored_file = out / SETTINGS_FILE
    if stored_file.is_file() and not overwrite and read_manifest(out) is not None:
        held.enter_context(output_lock(out, "--out"))
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
    study = Output(out, "study", "--out", "scripts.ablation", overwrite, {"data folder": data})
    with owned_output(study, hold=held) as stage:  # an earlier study stays until this succeeds
        (stage / SETTINGS_FILE).write_text(json.dumps(asdict(settings), indent=1))
    return Study(settings, data, out, [])


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
    with ExitStack() as held:
        study = open_study(settings, data, out, args.overwrite, held)
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

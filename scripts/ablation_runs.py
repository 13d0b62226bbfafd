"""One variant of the study as the commands a user would type: its patches, its training, its held-out evaluation."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models.checkpoint import read_checkpoint
from scripts.ablation_plan import (
    TrainVariant,
    inference_variants,
)
from utils.data.layout import INFO_FILE, patch_folder
from utils.presets import PRESETS, preset_flags
from utils.recipe import recipe_for

if TYPE_CHECKING:
    from scripts.ablation import Study


def make_patches(study: Study, variant: TrainVariant) -> int:
    """Cut the variant's patch set unless a matching one is there; returns its patch count."""
    s, size = study.settings, variant.img_size
    folder = patch_folder(study.data, s.valid_fold, size, variant.dataset)
    wanted = {"img_size": size, "stride": recipe_for(size).patch_stride, "resize": size, "v_threshold": variant.v_threshold,
              "folds": s.folds, "valid_fold": s.valid_fold, "patch_growth_count": variant.growth}  # fmt: skip
    info_file = folder / INFO_FILE
    if not (info_file.is_file() and json.loads(info_file.read_text())["settings"] == wanted):
        original = study.data / "train_original"
        where = {"input_path": original / "train_input_img", "target_path": original / "train_label_img",
                 "csv_path": original, "save_path": study.data, "dataset": variant.dataset, "overwrite": folder.exists()}  # fmt: skip
        study.command("make_patch.py", *preset_flags("ablation", "make_patch.py", wanted | where))
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
    shared = {name: getattr(s, name) for name in PRESETS["ablation"].training if hasattr(s, name)}  # the study's flags
    this_run = {"img_size": variant.img_size, "data_path": study.data, "dataset": variant.dataset, "fold": s.valid_fold,
                "model_path": folder, "exp_num": 1, "seed": seed, "patience": s.epochs,
                **({"aug_schedule": variant.aug_schedule} if variant.aug_schedule else {}),
                "resume" if resume else "overwrite": True}  # fmt: skip
    study.command("main.py", *preset_flags("ablation", "main.py", shared | this_run), output=(folder / "001", "run"))


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

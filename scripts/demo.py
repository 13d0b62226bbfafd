"""The whole pipeline on the built-in demo data, with the commands a user would type.

    make demo            (or: python -m scripts.demo)

Generates the demo set (``scripts.flare_data``: flare from optics, with glare and streak masks),
cuts the 256 and 352 patch sets, trains a small HINet at 256 and continues it at 352,
copies the best checkpoints to ``weights/``, runs ``test.py`` with ``--eval_dir``
and draws a comparison sheet. Each command is printed before it runs. Re-running
replaces the demo's own files cleanly; it refuses to touch data or weights that are
not the demo's.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import read_checkpoint
from scripts.commands import run
from scripts.flare_data import check_demo_folders
from utils.core.cli import run_cli
from utils.core.errors import UserError
from utils.core.owned import Output, check_output, owned_output
from utils.data.images import list_images, read_rgb
from utils.infer.inputs import submission_name
from utils.presets import PRESETS, preset_flags
from utils.recipe import RECIPE

DEMO_TAG = PRESETS["demo"].training["tag"]
# The original starts both sizes from pretrained weights; none can be fetched here, so the 256 model starts from
# random weights and the 352 model continues from it (progressive patch sizes), at a lower learning rate.
SIZES = {
    256: {"exp": 1, "continues": None, "lr": 1e-3},
    352: {"exp": 2, "continues": 256, "lr": 5e-4},
}


def check_ownership(data: Path, weights: Path) -> None:
    """Refuse to overwrite a user's own data or checkpoints, before the first step."""
    check_demo_folders(data, overwrite=True)
    for size in SIZES:
        check_output(demo_checkpoint(weights, size))


def demo_checkpoint(weights: Path, size: int) -> Output:
    """``weights/<size>_best.pth``, which the demo replaces only where an earlier demo wrote it."""
    return Output(weights / f"{size}_best.pth", "a demo checkpoint", "weights", "scripts.demo", True, ours=_tagged)


def install_checkpoint(src: Path, weights: Path, size: int) -> None:
    """Copy a demo run's best checkpoint into ``weights/``, where test.py looks by default."""
    print(f"\n$ cp {src} {weights / src.name}")
    with owned_output(demo_checkpoint(weights, size)) as copy:
        shutil.copyfile(src, copy)


def _tagged(path: Path) -> bool:
    try:
        config = read_checkpoint(path).get("config", {})
    except UserError:  # not a checkpoint at all, so not the demo's
        return False
    return isinstance(config, dict) and config.get("tag") == DEMO_TAG


@dataclass(frozen=True)
class Sheet:
    """How a comparison sheet titles its columns (``model``, ``target``) and how many rows (``limit``) of what
    width it has; with ``lamp_crop`` (input image -> window), each row goes on with the three cut to that window."""

    model: str = "restored"
    target: str = "clean target"
    lamp_crop: Callable[[np.ndarray], tuple[slice, slice]] | None = None
    limit: int = 4
    width: float = 4.0


def comparison(root: Path, restored: Path, out: Path, sheet: Sheet) -> None:
    """Held-out inputs, their restorations (``restored``: a test.py --eval_dir output) and the clean targets side by
    side, titled with their PSNR, so that a reader sees what the scores mean."""
    from utils.plots import comparison_sheet

    with open(restored / "metrics.csv") as fh:
        metrics = {r["image"]: r for r in csv.DictReader(fh)}
    rows = []
    for inp in list_images(root / "test_input_img")[: sheet.limit]:
        m = metrics[inp.name]
        images = [read_rgb(inp), read_rgb(restored / submission_name(inp.name)),
                  read_rgb(root / "test_label_img" / inp.name.replace("input", "label"))]  # fmt: skip
        titles = [
            f"input {float(m['psnr_input']):.2f} dB",
            f"{sheet.model} {float(m['psnr_ensemble']):.2f} dB",
            sheet.target,
        ]
        panels = list(zip(titles, images))
        if sheet.lamp_crop is not None:
            window = sheet.lamp_crop(images[0])
            panels += [(f"{t.split()[0]} at the lamp", im[window]) for t, im in zip(titles, images)]
        rows.append((inp.stem, panels))
    comparison_sheet(rows, out, sheet.width)


def mean_row(folder: Path) -> dict[str, float]:
    with open(folder / "metrics.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["image"] == "mean")
    return {k: float(v) if v else float("nan") for k, v in row.items() if k != "image"}


def print_comparison(original: Path, improved: Path) -> None:
    """The held-out test scores of the original's settings beside the project's (window blend, fitted weights)."""
    a, b = mean_row(original), mean_row(improved)
    weights = json.loads((improved / "ensemble.json").read_text())["weights"]
    seams = lambda m: "/".join(f"{m[f'seam_{size}']:.2f}" for size in SIZES)  # noqa: E731
    print("Held-out demo test images (mean against the clean targets):")
    print(f"  degraded input                              PSNR {a['psnr_input']:.2f} dB  SSIM {a['ssim_input']:.4f}")
    for name, m, w in (("original: mean blend, weights 0.4/0.6", a, "0.40/0.60"),
                       ("window blend, fitted weights", b, "/".join(f"{x:.2f}" for x in weights))):  # fmt: skip
        print(f"  {name:<42}  PSNR {m['psnr_ensemble']:.2f} dB  SSIM {m['ssim_ensemble']:.4f}  "
              f"seam 256/352 {seams(m)}  weights {w}  (256 alone {m['psnr_256']:.2f}, 352 alone {m['psnr_352']:.2f})")  # fmt: skip
    if "gpsnr_input" in b:
        regions = [f"{name} {b[f'{prefix}_input']:.2f} -> {b[f'{prefix}_ensemble']:.2f} dB"
                   for name, prefix in (("glare region", "gpsnr"), ("streak region", "spsnr"))]  # fmt: skip
        print(f"  PSNR over the masks, input -> window blend, fitted weights: {'; '.join(regions)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs_256", type=int, default=12)
    p.add_argument("--epochs_352", type=int, default=4)
    p.add_argument("--device", default="auto")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    py = sys.executable
    data, weights, results = Path("data"), Path("weights"), Path("results")
    check_ownership(data, weights)
    start = time.time()

    run([py, "-m", "scripts.flare_data", *preset_flags("demo", "scripts.flare_data", {"overwrite": True})])
    for size in SIZES:
        sized = {"img_size": size, "stride": RECIPE[size].patch_stride, "resize": size, "overwrite": True}
        run([py, "make_patch.py", *preset_flags("demo", "make_patch.py", sized)])
    best = lambda size: results / f"{SIZES[size]['exp']:03d}" / f"{size}_best.pth"  # noqa: E731
    for size, s in SIZES.items():
        epochs = args.epochs_256 if size == 256 else args.epochs_352
        init = "none" if s["continues"] is None else str(best(s["continues"]))
        run_settings = {"img_size": size, "exp_num": s["exp"], "epochs": epochs, "pretrained_path": init,
                        "initial_lr": s["lr"], "device": args.device, "overwrite": True}  # fmt: skip
        run([py, "main.py", *preset_flags("demo", "main.py", run_settings)])
    for size in SIZES:
        install_checkpoint(best(size), weights, size)
    evaluate = ["--eval_dir", "data/test_label_img", "--device", args.device, "--overwrite"]
    run([py, "test.py", *evaluate, "--output_dir", str(results / "submission_original")])  # the original's settings
    run([py, "test.py", *preset_flags("demo", "test.py"), *evaluate])

    submission = results / "submission"
    comparison(data, submission, results / "demo_comparison.png", Sheet())
    device = "CUDA" if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    print(f"\nDemo finished in {(time.time() - start) / 60:.1f} min on {device}.")
    print_comparison(results / "submission_original", submission)
    print(f"Restored images: {submission}/   comparison: {results / 'demo_comparison.png'}   "
          f"training curves: {results / '001' / 'curves.png'}, {results / '002' / 'curves.png'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Tiles against whole images, with and without local HIN statistics, on a labelled test set.

    python -m bench.bench_whole_image                  # the demo's checkpoints and test set
    python -m bench.bench_whole_image --weights a.pth b.pth --input_dir X --eval_dir Y

Each variant restores every image with the ensemble, as test.py does, into a temporary folder;
the table gives mean PSNR and SSIM against the labels and the seconds per image, measured in
one run so that the ratios between rows hold on a noisy machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.runtime import choose_device
from utils.infer.options import Ensemble, InferenceOptions, model_specs
from utils.infer.submission import run_inference

VARIANTS = {
    "tiles, mean blend (original)": {},
    "tiles, window blend": {"blend": "window"},
    "whole image": {"tile_mode": "full"},
    "whole image, local statistics 1.5": {"tile_mode": "full", "local_stats": 1.5},
}


def measure(weights: list[str], input_dir: Path, eval_dir: Path, device_name: str) -> list[tuple]:
    """(variant, PSNR, SSIM, seconds per image) for each variant, and the unrestored input first."""
    specs, device = model_specs(Ensemble(tuple(weights))), choose_device(device_name)
    base = InferenceOptions(eval_dir=str(eval_dir), make_zip=False, progress=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, change) in enumerate(VARIANTS.items()):
            result = run_inference(specs, input_dir, Path(tmp) / str(i), device, replace(base, **change))
            m = result.mean
            if not rows:
                rows.append(("unrestored input", m["psnr_input"], m["ssim_input"], 0.0))
            rows.append((name, m["psnr_ensemble"], m["ssim_ensemble"], result.seconds / result.images))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["weights/256_best.pth", "weights/352_best.pth"])
    p.add_argument("--input_dir", default="data/test_input_img")
    p.add_argument("--eval_dir", default="data/test_label_img")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    if not Path(args.eval_dir).is_dir():
        fail(f"--eval_dir {args.eval_dir} does not exist; run `make demo` first, or pass a labelled test set.")
    rows = measure(args.weights, Path(args.input_dir), Path(args.eval_dir), args.device)
    print("| restoration | PSNR (dB) | SSIM | s / image |\n|---|---|---|---|")
    for name, psnr, ssim, seconds in rows:
        print(f"| {name} | {psnr:.2f} | {ssim:.4f} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

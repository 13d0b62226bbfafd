"""Step 3: tiled inference with the 256 and 352 models, 0.4/0.6 ensemble, zipped submission.

python test.py                     # the original's defaults
python test.py --eval_dir data/test_label_img --overwrite
"""

from __future__ import annotations

import argparse
import sys

from utils.core.cli import run_cli
from utils.core.distributed import close, init_distributed
from utils.core.settings import add_settings, from_args
from utils.infer.options import INFERENCE_SETTINGS, InferenceOptions, model_specs
from utils.infer.submission import InferenceResult, run_inference


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``INFERENCE_SETTINGS``: how to restore, what and where, which models, the weight fit."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for cls in INFERENCE_SETTINGS:
        add_settings(p, cls)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    where, ensemble, fit = (from_args(cls, args) for cls in INFERENCE_SETTINGS[1:])
    specs = model_specs(ensemble)
    d, device = init_distributed(where.device)  # one process, or one of several under torchrun
    if fit.fit_weights and ensemble.ensemble_weights and d.main:
        print("--ensemble_weights given: they are used as they are, no weights are fitted")
    opts = from_args(InferenceOptions, args, fit=fit.request(ensemble))
    try:
        summary = run_inference(specs, where.input_dir, where.output_dir, device, opts, d)
    finally:
        close(d)
    if d.main:
        print_summary(summary, device if d.world == 1 else f"{d.world} processes ({device.type})")
    return 0


def print_summary(result: InferenceResult, device) -> None:
    n, m, fit = result.images, result.mean, result.fit
    if fit is not None:
        grid = "; ".join(f"{'/'.join(f'{w:g}' for w in ws)} {p:.3f}" for ws, p in fit.grid)
        print(f"validation PSNR (dB) per weight on {fit.images} held-out images: {grid}")
    weights = "/".join(f"{w:.2f}" for w in result.weights)
    print(
        f"{n} images restored into {result.output_dir} in {result.seconds:.1f} s "
        f"({result.seconds / n:.2f} s per image) on {device}; ensemble weights {weights}"
        + (f" (fitted: validation PSNR {fit.psnr:.3f} dB)" if fit is not None else "")
    )
    specs = result.specs
    print("mean seam measure (1.0 = no seam): " + ", ".join(f"{s.label} {m[f'seam_{s.label}']:.3f}" for s in specs))
    if "psnr_input" in m:
        parts = [f"input {m['psnr_input']:.2f}"] + [f"{s.label} {m[f'psnr_{s.label}']:.2f}" for s in specs]
        print(
            f"mean PSNR (dB): {', '.join(parts)}, ensemble {m['psnr_ensemble']:.2f}; "
            f"SSIM input {m['ssim_input']:.4f} -> ensemble {m['ssim_ensemble']:.4f}"
        )


if __name__ == "__main__":
    sys.exit(run_cli(main))

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
from utils.infer.options import InferenceOptions, model_specs
from utils.infer.submission import InferenceResult, run_inference

DEFAULT_WEIGHTS = ["weights/256_best.pth", "weights/352_best.pth"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", default="data/test_input_img", help="folder of degraded images")
    p.add_argument("--output_dir", default="results/submission", help="where the PNGs and submission.zip go")
    p.add_argument("--weights", nargs="+", default=DEFAULT_WEIGHTS, help="checkpoints to ensemble")
    p.add_argument(
        "--tile_sizes", nargs="+", type=int, help="tile size per checkpoint (default: its training patch size; 256 352)"
    )
    p.add_argument("--strides", nargs="+", type=int, help="tile stride per checkpoint (default 64 96; tile/4)")
    p.add_argument("--batch_sizes", nargs="+", type=int, help="tiles per forward pass per checkpoint (default 16 32)")
    p.add_argument(
        "--ensemble_weights",
        nargs="+",
        type=float,
        help="weight per checkpoint, normalised (default: by the size each was trained on, 0.4 for 256 and 0.6 for 352 in any order; equal otherwise)",
    )
    p.add_argument(
        "--fit_weights",
        action="store_true",
        help="choose the ensemble weights on held-out labelled images (grid step 0.05); --ensemble_weights win",
    )
    p.add_argument(
        "--fit_data", default="data/train_original", help="folder of train_10fold.csv and the training images"
    )
    p.add_argument("--fit_fold", type=int, default=0, help="the held-out fold to fit on (make_patch.py --valid_fold)")
    p.add_argument("--fit_input_dir", help="fit on this folder of degraded images instead (with --fit_label_dir)")
    p.add_argument("--fit_label_dir", help="the clean images of --fit_input_dir")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (new)")
    add_settings(p, InferenceOptions)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    specs = model_specs(args.weights, args.tile_sizes, args.strides, args.batch_sizes, args.ensemble_weights)
    d, device = init_distributed(args.device)  # one process, or one of several under torchrun
    fit = None
    if args.fit_weights and args.ensemble_weights and d.main:
        print("--ensemble_weights given: they are used as they are, no weights are fitted")
    elif args.fit_weights:
        fit = dict(
            data_dir=args.fit_data, fold=args.fit_fold, input_dir=args.fit_input_dir, label_dir=args.fit_label_dir
        )
    opts = from_args(InferenceOptions, args, fit=fit)
    try:
        summary = run_inference(specs, args.input_dir, args.output_dir, device, opts, d)
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

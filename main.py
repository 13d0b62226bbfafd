"""Step 2: train HINet on the patches of one size.

python main.py --img_size 256 --exp_num 1
python main.py --img_size 352 --exp_num 2
torchrun --nproc_per_node 4 main.py --img_size 256 --exp_num 1     # several GPUs
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from utils.errors import fail, run_cli
from utils.patches import DATASET
from utils.tiling import BLENDS
from utils.train_config import DEFAULT_PRETRAINED, OPTIMIZERS, SIZE_DEFAULTS, TrainConfig
from utils.trainer import train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_num", type=int, default=1, help="results go to <model_path>/<exp_num as 3 digits>/")
    p.add_argument("--tag", default="Default", help="free-text label recorded in the log")
    p.add_argument(
        "--pretrained_path",
        default=DEFAULT_PRETRAINED,
        help="HINet weights to start from (public HINet-GoPro.pth); 'none' for random weights",
    )
    p.add_argument("--data_path", default="./data")
    p.add_argument("--dataset", default=DATASET, help="patch folder name (make_patch.py --dataset)")
    p.add_argument("--fold", type=int, default=0, help="validation fold (make_patch.py --valid_fold)")
    p.add_argument("--model_path", default="results/")
    p.add_argument("--arch", default="HINet")
    p.add_argument("--img_size", type=int, default=256, help="training patch size (make_patch.py --resize)")
    p.add_argument("--batch_size", type=int, default=16, help="global batch, split over torchrun processes")
    p.add_argument("--pred_batch", type=int, default=32, help="tiles per forward pass in validation")
    p.add_argument("--epochs", type=int, default=500)
    p.add_argument("--initial_lr", type=float, default=5e-5)
    p.add_argument("--min_lr", type=float, default=1e-7)
    p.add_argument("--optimizer", default="Adam", help=f"one of {', '.join(OPTIMIZERS)}")
    p.add_argument(
        "--weight_decay",
        type=float,
        default=0.0,
        help="applied to the optimizer; the original declared 1e-3 but never applied it, so 0 reproduces it",
    )
    p.add_argument("--clipping", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--patience", type=int, default=30, help="early stop after this many epochs without improvement")
    p.add_argument("--multi_gpu", action="store_true", help="(original flag) use torchrun for several GPUs")
    p.add_argument("--num_workers", type=int, default=2, help="data-loading worker processes")
    p.add_argument("--wf", type=int, default=64, help="HINet width (channels of the first level)")
    p.add_argument("--depth", type=int, default=5, help="HINet depth (U-Net levels)")
    sizes = "; ".join(f"{k}: {v['aug_schedule']}" for k, v in SIZE_DEFAULTS.items())
    p.add_argument("--aug_schedule", help=f"EPOCH:VERSION list of augmentation versions (defaults {sizes})")
    restarts = ", ".join(f"{k}: {v['restart_epoch']}" for k, v in SIZE_DEFAULTS.items())
    p.add_argument(
        "--restart_epoch", type=int, help=f"epoch of the fresh-optimiser restart at 1e-5 ({restarts}); 0 = none"
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument(
        "--val_blend", choices=BLENDS, default="mean", help="validation tiles: mean (original) or window (no seams)"
    )
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16 where supported, else fp16 with scaling)")
    p.add_argument("--no_channels_last", action="store_true", help="keep the default memory format")
    p.add_argument("--resume", action="store_true", help="continue the run in <model_path>/<exp_num> from last.pth")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run of the same exp_num")
    p.add_argument("--run_epochs", type=int, help="stop after this many epochs in this invocation (time-limited jobs)")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# Flags whose setting has another name, for the record of what the user gave.
FLAG_SETTINGS = {"no_progress": "progress", "no_channels_last": "channels_last"}


def given_settings(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The settings named on the command line (``--wf 8`` or ``--wf=8``), whatever their value."""
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    dests = {a.dest for a in parser._actions if typed & set(a.option_strings)}
    return {FLAG_SETTINGS.get(d, d) for d in dests}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.multi_gpu and "RANK" not in os.environ:
        fail(
            "--multi_gpu: launch with torchrun for DistributedDataParallel, e.g. "
            "`torchrun --nproc_per_node <GPUs> main.py --img_size 256 --exp_num 1` (and --nnodes/--rdzv_endpoint for several machines)."
        )
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    cfg = TrainConfig(**given, channels_last=not args.no_channels_last, progress=not args.no_progress)
    summary = train(cfg, given_settings(parser, argv))
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best validation PSNR {summary['best_psnr']:.4f} dB at epoch {summary['best_epoch']} "
            f"({summary['epochs_done']} epochs, {summary['minutes']:.1f} min) in {summary['exp_dir']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

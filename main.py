"""Step 2: train HINet on the patches of one size.

python main.py --img_size 256 --exp_num 1
python main.py --img_size 352 --exp_num 2
torchrun --nproc_per_node 4 main.py --img_size 256 --exp_num 1     # several GPUs
"""

from __future__ import annotations

import argparse
import os
import sys

from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.settings import add_settings, from_args, given_settings
from utils.data.layout import DATASET
from utils.recipe import recipe_for
from utils.train.checks import PatchProblem
from utils.train.config import TrainConfig
from utils.train.trainer import train


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``TrainConfig`` (defaults, ranges and help live there), and the original's --multi_gpu."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings(p, TrainConfig)
    p.add_argument("--multi_gpu", action="store_true", help="(original flag) use torchrun for several GPUs")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def make_patch_command(cfg: TrainConfig, problem: PatchProblem) -> str:
    """The make_patch.py command that makes (or re-makes) the patches this run needs."""
    row = recipe_for(cfg.img_size)
    words = ["python make_patch.py", f"--img_size {cfg.img_size} --stride {row.patch_stride} --resize {cfg.img_size}",
             f"--valid_fold {cfg.fold} --save_path {cfg.data_path}"]  # fmt: skip
    words += [f"--dataset {cfg.dataset}"] if cfg.dataset != DATASET else []
    words += [f"--folds {problem.folds}"] if problem.folds else []
    words += ["--overwrite"] if problem.overwrite else []
    return " ".join(words)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.multi_gpu and "RANK" not in os.environ:
        fail(
            "--multi_gpu: launch with torchrun for DistributedDataParallel, e.g. "
            "`torchrun --nproc_per_node <GPUs> main.py --img_size 256 --exp_num 1` (and --nnodes/--rdzv_endpoint for several machines)."
        )
    cfg = from_args(TrainConfig, args)
    try:
        summary = train(cfg, given_settings(parser, argv))
    except PatchProblem as err:
        fail(f"{err} {make_patch_command(cfg, err)}")
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"best validation PSNR {summary.best_psnr:.4f} dB at epoch {summary.best_epoch} "
            f"({summary.epochs_done} epochs, {summary.minutes:.1f} min) in {summary.exp_dir}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

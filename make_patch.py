"""Step 1: K-fold split and training-patch extraction.

python make_patch.py --img_size 256 --stride 128 --resize 256 --folds 10 --valid_fold 0
python make_patch.py --img_size 352 --stride 176 --resize 352 --folds 10 --valid_fold 0
"""

from __future__ import annotations

import argparse
import sys

from utils.core.cli import run_cli
from utils.core.settings import add_settings, from_args
from utils.data.layout import DATASET
from utils.data.patches import PatchSettings, make_patches


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``PatchSettings`` (defaults, ranges and help live there), then where the data are and go."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_settings(p, PatchSettings)
    p.add_argument("--process_num", type=int, default=8, help="worker processes")
    p.add_argument("--input_path", default="./data/train_original/train_input_img/", help="degraded training images")
    p.add_argument("--target_path", default="./data/train_original/train_label_img/", help="their clean targets")
    p.add_argument("--csv_path", default="./data/train_original", help="folder of train.csv; the fold CSV goes there")
    p.add_argument("--save_path", default="./data", help="patches go to save_path/train/dataset/valid_fold/resizeN")
    p.add_argument("--dataset", default=DATASET, help="patch folder name; main.py --dataset reads the same (new)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing patch folder and a different fold CSV (new)"
    )
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar (new)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = from_args(PatchSettings, args)
    made = make_patches(
        settings,
        args.input_path,
        args.target_path,
        args.csv_path,
        args.save_path,
        process_num=args.process_num,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        dataset=args.dataset,
    )
    counts = ", ".join(f"{n} of {crop}" for crop, n in made.patches_per_crop.items())
    print(f"{made.total} patches from {made.images} images ({counts}) in {made.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

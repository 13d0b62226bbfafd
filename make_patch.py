"""Step 1: K-fold split and training-patch extraction.

python make_patch.py --img_size 256 --stride 128 --resize 256 --folds 10 --valid_fold 0
python make_patch.py --img_size 352 --stride 176 --resize 352 --folds 10 --valid_fold 0
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from utils.errors import run_cli
from utils.patches import DATASET, PatchSettings, make_patches, output_dir


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--img_size", type=int, default=256, help="crop size of the first growth step")
    p.add_argument("--stride", type=int, default=128, help="crop stride of the first growth step")
    p.add_argument("--resize", type=int, default=256, help="training patch size; larger crops are resized to it")
    p.add_argument(
        "--v_threshold", type=int, default=1000, help="minimum count of pixels with HSV value > 200 to keep a crop"
    )
    p.add_argument("--folds", type=int, default=10, help="number of K-fold splits")
    p.add_argument("--valid_fold", type=int, default=0, help="fold held out for validation")
    p.add_argument(
        "--patch_growth_count", type=int, default=2, help="growth steps: 1 = img_size, 2 = +512, i>=3 = +img_size*i"
    )
    p.add_argument("--process_num", type=int, default=8, help="worker processes")
    p.add_argument("--input_path", default="./data/train_original/train_input_img/")
    p.add_argument("--target_path", default="./data/train_original/train_label_img/")
    p.add_argument(
        "--csv_path", default="./data/train_original", help="folder of train.csv; train_10fold.csv is written there"
    )
    p.add_argument(
        "--save_path", default="./data", help="patches go to <save_path>/train/<dataset>/<valid_fold>/resize<resize>/"
    )
    p.add_argument("--dataset", default=DATASET, help="patch folder name (main.py --dataset reads the same)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing patch folder (and a different fold CSV)"
    )
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = PatchSettings(**{f.name: getattr(args, f.name) for f in fields(PatchSettings)})
    info = make_patches(
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
    counts = ", ".join(f"{n} of {crop}" for crop, n in info["patches_per_crop"].items())
    print(
        f"{info['total']} patches from {info['images']} images ({counts}) in "
        f"{output_dir(args.save_path, args.valid_fold, args.resize, args.dataset)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Step 1: K-fold split and training-patch extraction.

python make_patch.py --img_size 256 --stride 128 --resize 256 --folds 10 --valid_fold 0
python make_patch.py --img_size 352 --stride 176 --resize 352 --folds 10 --valid_fold 0
"""

from __future__ import annotations

import argparse
import sys

from utils.core.cli import run_cli
from utils.core.settings import add_settings, from_args
from utils.data.patch_settings import PATCH_SETTINGS
from utils.data.patches import make_patches


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``PATCH_SETTINGS``: what the patches depend on, where things are, how the run goes."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for cls in PATCH_SETTINGS:
        add_settings(p, cls)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings, paths, run = (from_args(cls, args) for cls in PATCH_SETTINGS)
    made = make_patches(settings, paths, run)
    counts = ", ".join(f"{n} of {crop}" for crop, n in made.patches_per_crop.items())
    print(f"{made.total} patches from {made.images} images ({counts}) in {made.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

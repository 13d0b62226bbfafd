"""What the patches depend on (``PatchSettings``, make_patch.py's flags) and every input checked before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from utils.core.errors import fail
from utils.core.settings import Allowed, check_ranges, setting
from utils.data.copies import all_identical
from utils.data.folds import kfold_split, read_pairs_csv
from utils.data.images import inspect_image
from utils.data.layout import DATASET
from utils.recipe import RECIPE

BRIGHT_VALUE = 200


# HINet halves the patch depth - 1 times; the default depth's multiple serves every smaller depth too.


@dataclass(frozen=True)
class PatchSettings:
    """What the patches depend on (stored in ``patch_info.json``); make_patch.py's flags follow from it."""

    img_size: int = setting(256, "crop size of the first growth step", Allowed(minimum=1))
    stride: int = setting(
        RECIPE[256].patch_stride,  # the original's default for every --img_size, not only 256
        "crop stride of the first growth step (the recipe's: "
        + ", ".join(f"{size}: {row.patch_stride}" for size, row in RECIPE.items())
        + ")",
        Allowed(minimum=1),
    )
    resize: int = setting(256, "training patch size; larger crops are resized to it", Allowed(minimum=1))
    v_threshold: int = setting(
        1000, f"pixels with HSV value > {BRIGHT_VALUE} a crop of the training size needs to be kept", Allowed(minimum=0)
    )
    folds: int = setting(10, "number of K-fold splits", Allowed(minimum=2))
    valid_fold: int = setting(0, "fold held out for validation", Allowed(minimum=0))
    patch_growth_count: int = setting(
        2, "growth steps: 1 = img_size, 2 adds 512/256 crops, i >= 3 adds img_size*i crops", Allowed(minimum=1)
    )

    def growth_steps(self) -> list[tuple[int, int]]:
        """(crop, stride) of each growth step."""
        steps = []
        for i in range(1, self.patch_growth_count + 1):
            steps.append((512, 256) if i == 2 else (self.img_size * i, self.stride * i))
        return steps


@dataclass(frozen=True)
class PatchPaths:
    """Where make_patch.py reads the training pairs and writes the fold table and the patches."""

    input_path: str = setting("./data/train_original/train_input_img/", "degraded training images")
    target_path: str = setting("./data/train_original/train_label_img/", "their clean targets")
    csv_path: str = setting("./data/train_original", "folder of train.csv; the fold CSV goes there")
    save_path: str = setting("./data", "patches go to save_path/train/dataset/valid_fold/resizeN")
    dataset: str = setting(DATASET, "patch folder name; main.py --dataset reads the same", new=True)


@dataclass(frozen=True)
class PatchRun:
    """How make_patch.py runs; none of it changes the patches."""

    process_num: int = setting(8, "worker processes", Allowed(minimum=1))
    overwrite: bool = setting(False, "replace an existing patch folder and a different fold CSV", new=True)
    progress: bool = setting(True, "hide the progress bar", new=True)


PATCH_SETTINGS = (PatchSettings, PatchPaths, PatchRun)  # make_patch.py's flags, in this order


def _pair_problems(row, in_path: Path, tar_path: Path, seen: dict[Path, str], problems: list[str]) -> list:
    """Append what is wrong with one train.csv row's files to ``problems``; returns the readable images' sizes."""
    for path, name in ((in_path, row.input_img), (tar_path, row.label_img)):
        first = seen.setdefault(path.resolve(), name)
        if first != name:
            problems.append(f"train.csv lists {first!r} and {name!r}, which are one file ({path.resolve()})")
    sizes = []
    for path in (in_path, tar_path):
        if not path.is_file():
            problems.append(f"{path} is listed in train.csv but does not exist")
            continue
        size, problem = inspect_image(path)
        if problem:
            problems.append(problem)
        else:
            sizes.append(size)
    if len(sizes) == 2 and sizes[0] != sizes[1]:
        problems.append(
            f"{in_path.name} is {sizes[0][0]}x{sizes[0][1]} but {tar_path.name} is {sizes[1][0]}x{sizes[1][1]}"
        )
    return sizes


def check_inputs(
    settings: PatchSettings, input_dir: Path, target_dir: Path, csv_dir: Path
) -> tuple[pd.DataFrame, list[tuple[Path, Path]]]:
    """Find every problem before any work starts; returns (fold table, training pairs). Fails listing all problems."""
    s = settings
    problems = check_ranges(s)
    if 0 < s.img_size < s.stride:
        problems.append(f"--stride {s.stride} is larger than --img_size {s.img_size}, which would leave gaps")
    if s.folds >= 2 and not 0 <= s.valid_fold < s.folds:
        problems.append(f"--valid_fold must be between 0 and {s.folds - 1} (got {s.valid_fold})")
    for flag, folder in (("--input_path", input_dir), ("--target_path", target_dir)):
        if not folder.is_dir():
            problems.append(f"{flag} folder {folder} does not exist")
    if problems:
        fail("; ".join(problems) + ".")

    df = read_pairs_csv(csv_dir / "train.csv")
    if len(df) < s.folds:
        fail(f"{csv_dir / 'train.csv'} lists {len(df)} pairs, fewer than --folds {s.folds}.")
    df = kfold_split(df, s.folds)
    steps = [(crop, stride) for crop, stride in s.growth_steps() if crop != s.resize]
    pairs = []
    seen: dict[Path, str] = {}  # resolved file -> the CSV name that listed it first
    for row in df.itertuples():
        in_path, tar_path = input_dir / row.input_img, target_dir / row.label_img
        sizes = _pair_problems(row, in_path, tar_path, seen, problems)
        if row.fold != s.valid_fold:
            for crop, _ in steps if sizes else []:
                if min(sizes[0]) < crop:
                    problems.append(
                        f"{in_path.name} is {sizes[0][0]}x{sizes[0][1]}, smaller than the {crop}x{crop} crop "
                        f"of the larger-patch step; lower --patch_growth_count or remove the image"
                    )
            pairs.append((in_path, tar_path))
    if problems:
        more = f" (and {len(problems) - 10} more problems)" if len(problems) > 10 else ""
        fail("; ".join(problems[:10]) + more + ".")
    check_labels_differ(df, input_dir, target_dir, csv_dir / "train.csv")
    return df, pairs


def check_labels_differ(df: pd.DataFrame, input_dir: Path, target_dir: Path, csv_file: Path) -> None:
    """Refuse a train.csv whose every label is a copy of its input (the label folder pointed at the inputs, or
    filled with them): the patches would teach the model to change nothing. A few identical pairs are
    legitimate (photos without flare), so only all of them is an error; the first differing pair ends the check."""
    pairs = [(input_dir / r.input_img, target_dir / r.label_img) for r in df.itertuples()]
    if all_identical(pairs):
        fail(
            f"every label image listed in {csv_file} is identical to its input (e.g. {pairs[0][1]}), so the "
            f"patches would teach the model to change nothing; point --target_path at the folder of the clean images."
        )

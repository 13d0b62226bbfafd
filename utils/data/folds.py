"""The pairs of train.csv, the K-fold split, and the training and validation pairs of a fold."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
import pandas as pd

from utils.core.errors import fail, one_line
from utils.data.images import list_images
from utils.data.layout import INPUT_FOLDER, LABEL_FOLDER

PAIR_COLUMNS = ("input_img", "label_img")


@dataclass(frozen=True)
class Pair:
    input: Path
    target: Path


def read_pairs_csv(csv_file: str | Path) -> pd.DataFrame:
    """``train.csv`` with its ``input_img`` and ``label_img`` columns checked."""
    csv_file = Path(csv_file)
    if not csv_file.is_file():
        fail(f"{csv_file} does not exist; put the contest's train.csv there or point --csv_path at its folder.")
    try:
        df = pd.read_csv(csv_file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        fail(f"{csv_file} is not a readable CSV file ({one_line(err)}).")
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        fail(f"{csv_file} lacks the column(s) {', '.join(missing)}; it needs {', '.join(PAIR_COLUMNS)}.")
    if df.empty:
        fail(f"{csv_file} lists no image pairs.")
    for column in PAIR_COLUMNS:
        df[column] = df[column].str.strip()
        empty = df.index[df[column] == ""]
        if len(empty):
            fail(f"{csv_file} row {empty[0] + 2} has an empty {column}; every row needs both file names.")
    folder = {"input_img": INPUT_FOLDER, "label_img": LABEL_FOLDER}
    for column in PAIR_COLUMNS:
        for row, name in enumerate(df[column], start=2):
            if escapes(name):
                fail(
                    f"{csv_file} row {row} names {column} {name!r}, which lies outside the {folder[column]} folder; "
                    f"list each image by its path inside that folder."
                )
    for column in ("img_id", *PAIR_COLUMNS):
        if column not in df.columns:
            continue
        keys = df[column] if column == "img_id" else df[column].map(posixpath.normpath)  # ./a.png is a.png
        if keys.duplicated().any():
            name = df.loc[keys.duplicated(), column].iloc[0]
            fail(
                f"{csv_file} lists {column} {name!r} more than once; a repeated pair could fall into both the training "
                f"and the validation folds, so remove the duplicate."
            )
    for column in PAIR_COLUMNS:
        names = df[column].map(lambda n: PurePosixPath(n).name)
        if names.duplicated().any():
            name = names[names.duplicated()].iloc[0]
            paths = df.loc[names == name, column].tolist()
            fail(
                f"{csv_file} lists two {column} files named {name!r} ({paths[0]} and {paths[1]}); their patches would "
                f"get the same names and overwrite each other, so rename one of them."
            )
    return df


def escapes(name: str) -> bool:
    """True if a CSV file name leaves the folder it is relative to: absolute, or climbing out with ``..``."""
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return True
    norm = posixpath.normpath(name.replace("\\", "/"))
    return norm == ".." or norm.startswith("../")


def kfold_split(df: pd.DataFrame, folds: int, seed: int = 42) -> pd.DataFrame:
    """Add column ``fold``: the split of ``KFold(folds, shuffle=True, random_state=seed)`` in which a row validates."""
    from sklearn.model_selection import KFold  # imported here: a second of start-up that only make_patch needs

    df = df.reset_index(drop=True).copy()
    df["fold"] = 0
    for fold, (_, val_idx) in enumerate(
        KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(len(df)))
    ):
        df.loc[val_idx, "fold"] = fold
    return df


def read_fold_csv(fold_csv: str | Path) -> pd.DataFrame:
    """The fold table make_patch.py wrote, checked: pair columns, a fold per row, no repeated image."""
    fold_csv = Path(fold_csv)
    if not fold_csv.is_file():
        fail(f"fold file {fold_csv} does not exist; run make_patch.py first, it writes it.")
    df = read_pairs_csv(fold_csv)
    if "fold" not in df.columns or not df["fold"].str.fullmatch(r"\d+").all():
        fail(f"{fold_csv} lacks a whole-number fold for every row; re-run make_patch.py.")
    df["fold"] = df["fold"].astype(int)
    return df


def held_out_pairs(df: pd.DataFrame, original_dir: str | Path, fold: int) -> list[Pair]:
    """The full-size pairs of fold ``fold`` (the validation images), in the contest layout of ``original_dir``."""
    inputs, labels = Path(original_dir) / INPUT_FOLDER, Path(original_dir) / LABEL_FOLDER
    return [Pair(inputs / r.input_img, labels / r.label_img) for r in df[df["fold"] == fold].itertuples()]


# make_patch.py names a patch ``<5-digit index>_[<crop>_]<name of the image it was cut from>``.
PATCH_NAME = re.compile(r"^(?P<prefix>\d{5}_(?:\d+_)?)(?P<source>.+)$")


def patch_pairs(input_dir: str | Path, target_dir: str | Path, folds: pd.DataFrame, valid_fold: int) -> list[Pair]:
    """Input and target patches paired by name through the fold table, in natural order.

    Refuses unpaired files (naming them) and any patch cut from a validation image, which
    would leak validation data into training.
    """
    inputs = list_images(input_dir)
    if not inputs:
        fail(f"patch folder {input_dir} holds no images; run make_patch.py for this size and fold.")
    targets = {p.name: p for p in list_images(target_dir)}
    label_of = dict(zip(folds["input_img"], folds["label_img"], strict=True))
    fold_of = dict(zip(folds["input_img"], folds["fold"], strict=True))
    pairs, unpaired, leaked = [], [], []
    for path in inputs:
        match = PATCH_NAME.match(path.name)
        source = match["source"] if match else None
        target = targets.pop(match["prefix"] + label_of[source], None) if source in label_of else None
        if target is None:
            unpaired.append(path.name)
        elif fold_of[source] == valid_fold:
            leaked.append(path.name)
        else:
            pairs.append(Pair(path, target))
    redo = "re-run make_patch.py with --overwrite"
    if leaked:
        fail(
            f"{len(leaked)} training patches come from validation images of fold {valid_fold} (e.g. {leaked[0]}); {redo} for this fold."
        )
    if unpaired or targets:
        names = unpaired[:1] + sorted(targets)[:1]
        fail(
            f"{len(unpaired)} input and {len(targets)} target patches have no partner (e.g. {', '.join(names)}); {redo}."
        )
    return pairs

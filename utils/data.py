"""The contest data layout, the K-fold split and the training/validation data sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import KFold
from torch.utils.data import Dataset

from utils.errors import fail
from utils.image_io import list_images, read_rgb

PAIR_COLUMNS = ("input_img", "label_img")
FOLD_CSV = "train_10fold.csv"


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
        df = pd.read_csv(csv_file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        fail(f"{csv_file} is not a readable CSV file ({err}).")
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        fail(f"{csv_file} lacks the column(s) {', '.join(missing)}; it needs {', '.join(PAIR_COLUMNS)}.")
    if df.empty:
        fail(f"{csv_file} lists no image pairs.")
    return df


def kfold_split(df: pd.DataFrame, folds: int, seed: int = 42) -> pd.DataFrame:
    """Add column ``fold``: the split of ``KFold(folds, shuffle=True, random_state=seed)`` in which a row validates."""
    df = df.reset_index(drop=True).copy()
    df["fold"] = 0
    for fold, (_, val_idx) in enumerate(
        KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(len(df)))
    ):
        df.loc[val_idx, "fold"] = fold
    return df


def fold_pairs(
    fold_csv: str | Path, input_dir: str | Path, target_dir: str | Path, fold: int, validation: bool
) -> list[Pair]:
    """The validation pairs (``fold == fold``) or training pairs (``fold != fold``) of a fold CSV."""
    fold_csv = Path(fold_csv)
    if not fold_csv.is_file():
        fail(f"fold file {fold_csv} does not exist; run make_patch.py first, it writes it.")
    df = pd.read_csv(fold_csv)
    if "fold" not in df.columns or any(c not in df.columns for c in PAIR_COLUMNS):
        fail(f"{fold_csv} lacks the columns fold, input_img and label_img; re-run make_patch.py.")
    rows = df[(df["fold"] == fold) if validation else (df["fold"] != fold)]
    return [Pair(Path(input_dir) / r.input_img, Path(target_dir) / r.label_img) for r in rows.itertuples()]


def patch_pairs(input_dir: str | Path, target_dir: str | Path) -> list[Pair]:
    """Matching input/target patch files of a make_patch folder, in natural order."""
    inputs, targets = list_images(input_dir), list_images(target_dir)
    if not inputs:
        fail(f"patch folder {input_dir} holds no images; run make_patch.py for this size and fold.")
    if len(inputs) != len(targets):
        fail(
            f"{input_dir} holds {len(inputs)} patches but {target_dir} holds {len(targets)}; re-run make_patch.py with --overwrite."
        )
    return [Pair(i, t) for i, t in zip(inputs, targets, strict=True)]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) array in [0, 1] to a contiguous (C, H, W) float tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


class PatchDataset(Dataset):
    """Training patches as float RGB in [0, 1]; the augmentation sees the input as ``image`` and the target as ``mask``."""

    def __init__(self, pairs: list[Pair], transform=None) -> None:
        self.pairs = pairs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[idx]
        image = read_rgb(pair.input).astype(np.float32) / 255.0
        target = read_rgb(pair.target).astype(np.float32) / 255.0
        if self.transform is not None:
            out = self.transform(image=image, mask=target)
            image, target = out["image"], out["mask"]
        return to_tensor(image), to_tensor(target)

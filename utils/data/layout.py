"""The contest's folder layout, which the real data and the generated data share, in one place.

data/train_original/{train_input_img, train_label_img, train.csv, train_10fold.csv}
data/test_input_img/   data/test_label_img/ (held-out labels, where there are any)
data/train/<dataset>/<fold>/resize<size>/{input, target, patch_info.json}
"""

from __future__ import annotations

from pathlib import Path

TRAIN_ORIGINAL = "train_original"
INPUT_FOLDER, LABEL_FOLDER = "train_input_img", "train_label_img"  # inside train_original
PAIRS_CSV, FOLD_CSV = "train.csv", "train_10fold.csv"  # inside train_original
TEST_INPUT, TEST_LABEL = "test_input_img", "test_label_img"
DATASET = "10Folds"  # the original's folder name, whatever --folds; main.py --dataset names the same folder
INFO_FILE = "patch_info.json"  # inside a patch folder: the settings it was made with


def patch_folder(save_path: str | Path, valid_fold: int, resize: int, dataset: str = DATASET) -> Path:
    """``<save_path>/train/<dataset>/<fold>/resize<resize>``."""
    return Path(save_path) / "train" / dataset / str(valid_fold) / f"resize{resize}"

"""The contest's folder layout, which the real data and the generated data share, in one place.

data/train_original/{train_input_img, train_label_img, train.csv, train_10fold.csv}
data/test_input_img/   data/test_label_img/ (held-out labels, where there are any)
data/test_mask_img/, data/train_original/train_mask_img/ (generated data only: glare and streak masks)
data/train/<dataset>/<fold>/resize<size>/{input, target, patch_info.json}
"""

from __future__ import annotations

from pathlib import Path

TRAIN_ORIGINAL = "train_original"
INPUT_FOLDER, LABEL_FOLDER = "train_input_img", "train_label_img"  # inside train_original
PAIRS_CSV, FOLD_CSV = "train.csv", "train_10fold.csv"  # inside train_original
TEST_INPUT, TEST_LABEL = "test_input_img", "test_label_img"
TRAIN_MASKS, TEST_MASKS = "train_mask_img", "test_mask_img"  # beside the label folders, in generated data
MASK_KINDS = ("glare", "streak")
DATASET = "10Folds"  # the original's folder name, whatever --folds; main.py --dataset names the same folder
INFO_FILE = "patch_info.json"  # inside a patch folder: the settings it was made with


def dataset_problem(dataset: str) -> str | None:
    """Why ``--dataset`` cannot name a patch folder under ``train/`` (None if it can): ``..`` or a path would
    put patches elsewhere."""
    if not dataset or Path(dataset).name != dataset or dataset in (".", ".."):
        return f"--dataset {dataset!r} must be a plain folder name, such as {DATASET}"
    return None


def patch_folder(save_path: str | Path, valid_fold: int, resize: int, dataset: str = DATASET) -> Path:
    """``<save_path>/train/<dataset>/<fold>/resize<resize>``."""
    return Path(save_path) / "train" / dataset / str(valid_fold) / f"resize{resize}"


def mask_folder(label_folder: str | Path) -> Path | None:
    """Where the masks of a folder of clean images lie: beside it, with ``label`` in its name replaced by ``mask``
    (test_label_img -> test_mask_img); None for a folder without ``label`` in its name."""
    label_folder = Path(label_folder)
    name = label_folder.name
    return label_folder.with_name(name.replace("label", "mask")) if "label" in name else None


def mask_name(input_name: str, kind: str) -> str:
    """The file name of an input's ``kind`` mask (``glare`` or ``streak``): test_input_20000.png -> test_glare_20000.png."""
    return f"{Path(input_name).stem.replace('input', kind)}.png"

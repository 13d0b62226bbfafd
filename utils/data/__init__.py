"""Data: the contest layout, images, the fold split, patch extraction, training data sets and augmentation."""

from utils.data.folds import INPUT_FOLDER, LABEL_FOLDER  # noqa: F401  TEMPORARY for utils/flare

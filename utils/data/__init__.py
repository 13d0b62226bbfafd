"""Data: the contest layout, images, the K-fold split, patch extraction, training data sets and augmentation."""

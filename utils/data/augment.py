"""The solution's three augmentation versions and its adaptive schedule.

The input goes in as ``image`` and the target as ``mask``, so geometric changes
apply to both and colour changes to the input only.

* v1: ``Resize`` only.
* v2: one of horizontal flip / rotate-90 (p=0.5), then ``Resize``.
* v3: one of horizontal flip / vertical flip / rotate-90 / shift-scale-rotate
  (p=0.5), colour jitter (p=0.3), then ``Resize``.

Albumentations 2.x changed some defaults since the original was written (1.x); the
1.x values are set explicitly so the transforms behave as they did: colour jitter
0.2 for brightness, contrast, saturation and hue; shift-scale-rotate reflecting at
the border. As in 1.x, the target of shift-scale-rotate uses nearest interpolation.
"""

from __future__ import annotations

import warnings

import albumentations as A
import cv2

from utils.core.errors import fail

AUG_VERSIONS = (1, 2, 3)


def transforms(p: float = 0.5) -> dict[str, A.BasicTransform]:
    """The original's single transforms with their parameters, each applied with probability ``p``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "ShiftScaleRotate is a special case of Affine"
        return {
            "HorizontalFlip": A.HorizontalFlip(p=p),
            "VerticalFlip": A.VerticalFlip(p=p),
            "RandomRotate90": A.RandomRotate90(p=p),
            "ShiftScaleRotate": A.ShiftScaleRotate(border_mode=cv2.BORDER_REFLECT_101, p=p),
            "ColorJitter": A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.2, p=p),
        }


def build_augmentation(img_size: int, version: int) -> A.Compose:
    """The albumentations pipeline of augmentation version 1, 2 or 3."""
    resize = A.Resize(img_size, img_size)
    if version == 1:
        return A.Compose([resize])
    t = transforms()
    if version == 2:
        return A.Compose([A.OneOf([t["HorizontalFlip"], t["RandomRotate90"]], p=0.5), resize])
    if version == 3:
        flips = [t["HorizontalFlip"], t["VerticalFlip"], t["RandomRotate90"], t["ShiftScaleRotate"]]
        colour = transforms(p=0.3)["ColorJitter"]
        return A.Compose([A.OneOf(flips, p=0.5), colour, resize])
    raise ValueError(f"augmentation version must be one of {AUG_VERSIONS}, got {version}")


def parse_aug_schedule(text: str) -> list[tuple[int, int]]:
    """Parse ``"1:1,6:2,25:3"`` (from epoch: version) into sorted (epoch, version) pairs starting at epoch 1."""
    try:
        pairs = sorted((int(a), int(b)) for a, b in (item.split(":") for item in text.split(",")))
    except ValueError:
        fail(f"--aug_schedule {text!r} is not of the form 'EPOCH:VERSION,...', e.g. '1:1,6:2,25:3'.")
    if not pairs or pairs[0][0] != 1:
        fail(f"--aug_schedule {text!r} must start at epoch 1, e.g. '1:1,3:3'.")
    bad = [v for _, v in pairs if v not in AUG_VERSIONS]
    if bad:
        fail(f"--aug_schedule {text!r} names augmentation version {bad[0]}; versions are 1, 2 and 3.")
    return pairs


def aug_version_at(schedule: list[tuple[int, int]], epoch: int) -> int:
    """Augmentation version in force at ``epoch`` (1-based)."""
    version = schedule[0][1]
    for start, ver in schedule:
        if epoch >= start:
            version = ver
    return version

"""Small photos with camera metadata, as a person's photo folder has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CAMERA = {0x010F: "PhoneCo", 0x0110: "Model X", 0x0132: "2026:01:02 03:04:05"}  # make, model, date


def night_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """A dark picture with one bright lamp (a clipped core 5 pixels across) and its glow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - height / 3, xx - width / 2)
    glow = 200 * np.exp(-(distance**2) / (2 * (width / 8) ** 2)) + 255 * (distance <= 2.5)
    rgb = rng.integers(10, 60, (height, width, 3)) + glow[..., None]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def save_photo(path: Path, rgb: np.ndarray, orientation: int | None = None, **options) -> Path:
    """``rgb`` saved as a camera would: with make, model and date in its EXIF (and an orientation if given)."""
    exif = Image.Exif()
    for tag, value in CAMERA.items():
        exif[tag] = value
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), **options)
    return path

"""Reading and writing images with OpenCV, with clear errors and explicit format conversions."""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from utils.errors import fail

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def to_bgr8(img: np.ndarray, path: str | Path) -> np.ndarray:
    """Convert grey-scale, alpha or 16-bit images to 8-bit 3-channel BGR, warning once per image."""
    notes = []
    if img.dtype == np.uint16:
        img = np.round(img / 257.0).astype(np.uint8)
        notes.append("16-bit to 8-bit")
    elif img.dtype != np.uint8:
        fail(f"{path} has pixel type {img.dtype}; only 8-bit or 16-bit images are supported.")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        notes.append("grey-scale to colour")
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
        notes.append("alpha channel dropped")
    elif img.shape[2] != 3:
        fail(f"{path} has {img.shape[2]} channels; expected 1, 3 or 4.")
    if notes:
        warnings.warn(f"{path}: converted ({', '.join(notes)})", stacklevel=2)
    return img


def read_bgr(path: str | Path) -> np.ndarray:
    """Read an image as 8-bit BGR (H, W, 3), converting other formats; one clear error if unreadable."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not Path(path).exists():
            fail(f"image {path} does not exist.")
        fail(f"{path} could not be decoded as an image; replace or remove it.")
    return to_bgr8(img, path)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as 8-bit RGB (H, W, 3)."""
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, in natural order (``img_2`` before ``img_10``)."""
    folder = Path(folder)
    if not folder.is_dir():
        fail(f"folder {folder} does not exist.")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def natural_key(path: str | Path) -> list:
    name = Path(path).name
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def inspect_image(path: str | Path) -> tuple[tuple[int, int] | None, str | None]:
    """``((height, width), problem)`` of an image file, read once; ``problem`` is None for a usable image.

    PNG files are judged from their header alone (size, 8 or 16 bits); other formats are
    decoded and their pixel type and channel count checked as ``to_bgr8`` would.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError as err:
        return None, f"{path} cannot be read ({err.strerror})"
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height, bits = *struct.unpack(">II", head[16:24]), head[24]
        if width == 0 or height == 0:
            return (height, width), f"{path} is an empty image"
        return (height, width), None if bits in (1, 2, 4, 8, 16) else f"{path} has an unsupported PNG bit depth {bits}"
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, f"{path} cannot be decoded as an image"
    if img.dtype not in (np.uint8, np.uint16):
        return img.shape[:2], f"{path} has pixel type {img.dtype}; only 8-bit or 16-bit images are supported"
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        return img.shape[:2], f"{path} has {img.shape[2]} channels; expected 1, 3 or 4"
    return img.shape[:2], None


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width), from a PNG header without decoding; None if unreadable."""
    return inspect_image(path)[0]


def from_uint8(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB array to a (3, H, W) float tensor in [0, 1] on ``device``."""
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] to an (H, W, 3) uint8 RGB array, rounded once."""
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()

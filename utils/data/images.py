"""Reading and writing images with OpenCV, with clear errors and explicit format conversions."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from utils.core.errors import fail
from utils.data.headers import (
    FORMATS,
    PNG_MAGIC,
    TRANSPOSING,
    exif_orientation,
    file_kind,
    header_size,
    image_kind,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# The most pixels an image may declare in its header: 256 megapixels (16384 x 16384, 30 times a
# contest image). A file declaring more, a "decompression bomb" perhaps, is refused before it is
# decoded; HINET_MAX_IMAGE_PIXELS raises or lowers the limit.
MAX_PIXELS = 1 << 28


def max_pixels() -> int:
    text = os.environ.get("HINET_MAX_IMAGE_PIXELS")
    if text is None:
        return MAX_PIXELS
    if not text.strip().isdigit() or int(text) == 0:
        fail(
            f"HINET_MAX_IMAGE_PIXELS={text!r} is not a positive whole number of pixels; unset it or set, e.g., {MAX_PIXELS}."
        )
    return int(text)


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


# EXIF orientation (tag 0x0112) 2..8: how to turn the stored pixels upright. Phones store portrait photos
# as landscape pixels plus this tag; OpenCV's IMREAD_UNCHANGED ignores it in JPEG and PNG files.
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def decode(path: str | Path) -> np.ndarray | None:
    """The file's pixels as OpenCV gives them (BGR order), upright; None if it cannot be decoded.

    OpenCV 4.14 cannot decode a TIFF whose EXIF orientation transposes it (5 to 8); Pillow reads
    those (8-bit grey, RGB or RGBA) and turns them upright.
    """
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is not None or file_kind(path) not in ("tiff", "bigtiff"):
        return None if img is None else upright(img, path)
    from PIL import ImageOps

    try:
        with Image.open(path) as im:
            pixels = np.asarray(ImageOps.exif_transpose(im)) if im.mode in ("L", "RGB", "RGBA") else None
    except Exception:
        return None
    if pixels is None or pixels.ndim == 2:
        return pixels
    return np.ascontiguousarray(pixels[..., [2, 1, 0, 3][: pixels.shape[2]]])  # RGB(A) to OpenCV's BGR(A)


def upright(img: np.ndarray, path: str | Path) -> np.ndarray:
    """The decoded pixels turned as the file's EXIF orientation says."""
    turn = _UPRIGHT.get(exif_orientation(path))
    return img if turn is None else np.ascontiguousarray(turn(img))


def read_bgr(path: str | Path) -> np.ndarray:
    """Read an image as 8-bit BGR (H, W, 3), upright as its EXIF orientation says, converting other formats;
    one clear error if unreadable or too large."""
    return to_bgr8(_decoded(path), path)


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask as 8-bit grey (H, W), upright; a grey file (as masks are) is no conversion worth a warning."""
    img = _decoded(path)
    if img.ndim == 2 and img.dtype == np.uint8:
        return img
    return cv2.cvtColor(to_bgr8(img, path), cv2.COLOR_BGR2GRAY)


def _decoded(path: str | Path) -> np.ndarray:
    if not Path(path).exists():
        fail(f"image {path} does not exist.")
    problem = size_problem(path, header_size(path))
    if problem is not None:
        fail(problem + ".")
    img = decode(path)
    if img is None:
        fail(f"{path} could not be decoded as an image; replace or remove it.")
    return img


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


def size_problem(path: str | Path, size: tuple[int, int] | None) -> str | None:
    """Why a file whose header declares ``size`` must not be decoded, as a sentence without its full stop: more
    pixels than the limit, or no size at all (another format, or a damaged header: such a file could hold
    anything, so it is refused rather than decoded unchecked); None if it may be decoded."""
    if size is None:
        return (
            f"{path} cannot be decoded as an image: it is not a {FORMATS} file, or its header is damaged; convert "
            f"it to PNG or remove it"
        )
    limit = max_pixels()
    if size[0] * size[1] <= limit:
        return None
    return (
        f"{path} declares {size[1]}x{size[0]} pixels, more than the limit of {limit:,} (a damaged file or a "
        f"decompression bomb would exhaust the memory), so it is not decoded; if the image is genuine, shrink it or "
        f"raise HINET_MAX_IMAGE_PIXELS"
    )


def inspect_image(path: str | Path) -> tuple[tuple[int, int] | None, str | None]:
    """``((height, width), problem)`` of an image file, read once; ``problem`` is None for a usable image.

    PNG files are judged from their header alone (size, 8 or 16 bits, EXIF orientation); other
    formats are decoded and their pixel type and channel count checked as ``to_bgr8`` would. No
    file whose header declares more than the pixel limit, or no size at all, is decoded.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError as err:
        return None, f"{path} cannot be read ({err.strerror})"
    declared = header_size(path)
    problem = size_problem(path, declared)
    if problem is not None:
        return declared, problem
    if head[:8] == PNG_MAGIC:
        height, width, bits = *declared, head[24] if len(head) > 24 else 0
        if width == 0 or height == 0:
            return (height, width), f"{path} is an empty image"
        size = (width, height) if exif_orientation(path) in TRANSPOSING else (height, width)  # as read_bgr turns it
        return size, None if bits in (1, 2, 4, 8, 16) else f"{path} has an unsupported PNG bit depth {bits}"
    pages = tiff_pages(path) if image_kind(head) in ("tiff", "bigtiff") else 1
    if pages != 1:
        return (
            declared,
            f"{path} holds {pages} pages (a multi-page TIFF), of which only one would be restored; save each page as an image of its own",
        )
    img = decode(path)
    if img is None:
        return None, f"{path} cannot be decoded as an image"
    if img.dtype not in (np.uint8, np.uint16):
        return img.shape[:2], f"{path} has pixel type {img.dtype}; only 8-bit or 16-bit images are supported"
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        return img.shape[:2], f"{path} has {img.shape[2]} channels; expected 1, 3 or 4"
    return img.shape[:2], None


def tiff_pages(path: Path) -> int:
    """How many pages (images) a TIFF file holds, from its directories alone (its size is checked already);
    1 where Pillow cannot tell, and decoding decides."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return getattr(im, "n_frames", 1)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return 1


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width), upright, from a PNG header without decoding; None if unreadable."""
    return inspect_image(path)[0]


def from_uint8(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB array to a (3, H, W) float tensor in [0, 1] on ``device``; a read-only array (NumPy's
    view of a PIL image) is copied, since torch would warn about sharing it."""
    rgb = rgb if rgb.flags.writeable else rgb.copy()
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] to an (H, W, 3) uint8 RGB array, rounded once."""
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()

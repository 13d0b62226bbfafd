"""A photo as a person has it: read upright with its metadata, written back in its own format with that metadata.

``read_photo`` refuses in one sentence what cannot be restored faithfully (a truncated file, 16-bit samples, a
decompression bomb, a format that is not a photo); ``write_photo`` keeps the EXIF (date, camera, GPS) with the
orientation reset to upright, the colour profile and the alpha channel, and marks the file as restored by this
project (EXIF Software), which is how ``is_restored`` recognises a file that ``--overwrite`` may replace.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from utils.core.errors import fail, one_line

try:  # HEIC/HEIF, the iPhone's format, through the maintained pillow-heif plug-in
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - installed with requirements.txt
    HEIF = False

SOFTWARE = "hinet-flare restore.py"  # EXIF Software of every restored photo
ORIENTATION, SOFTWARE_TAG = 0x0112, 0x0131
# Pillow's format name -> the suffixes a photo of it has; BMP carries no metadata and is written as PNG
FORMATS = {"JPEG": (".jpg", ".jpeg", ".jpe"), "PNG": (".png",), "WEBP": (".webp",), "TIFF": (".tif", ".tiff"),
           "BMP": (".bmp",), "HEIF": (".heic", ".heif")}  # fmt: skip
SUFFIXES = {s: name for name, suffixes in FORMATS.items() for s in suffixes}
RESTORED = "_restored"
BOMB_MEGAPIXELS = 178  # Pillow refuses pictures over twice its MAX_IMAGE_PIXELS (2 x 89.5 MP) by default
EIGHT_BIT = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "YCbCr"}


@dataclass
class Photo:
    """An upright 8-bit RGB photo, its alpha channel if it has one, and what is written back with it."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray | None
    format: str  # Pillow's name: JPEG, PNG, WEBP, TIFF, BMP, HEIF
    exif: Image.Exif
    icc_profile: bytes | None

    @property
    def megapixels(self) -> float:
        return self.rgb.shape[0] * self.rgb.shape[1] / 1e6


def read_photo(source: Path | bytes, name: str, max_megapixels: float) -> Photo:
    """The photo in ``source`` (a file, or an upload's bytes) named ``name`` in messages, decoded and turned
    upright; refused in one sentence if it cannot be restored faithfully."""
    with opened_image(source, name) as image:
        check_header(image, name, max_megapixels)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as err:
            fail(f"{name} is truncated or corrupt ({one_line(err)}); nothing was written for it.")
        exif = _readable_exif(image)
        for tag in _LAYOUT_TAGS & set(exif):  # a TIFF's own layout, which its restoration's writer sets anew
            del exif[tag]
        upright = _upright(image, exif.get(ORIENTATION, 1))
        if ORIENTATION in exif:
            exif[ORIENTATION] = 1  # the pixels are now upright
        exif[SOFTWARE_TAG] = SOFTWARE
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info
        rgba = upright.convert("RGBA" if has_alpha else "RGB")
        pixels = np.array(rgba)  # writable, as torch wants it
        return Photo(
            rgb=np.ascontiguousarray(pixels[..., :3]),
            alpha=np.ascontiguousarray(pixels[..., 3]) if has_alpha else None,
            format=_format(image),
            exif=exif,
            icc_profile=image.info.get("icc_profile"),
        )


# TIFF tags that describe how the pixels of a file are laid out: a TIFF's EXIF holds them, and written back they
# would describe the source (its size before turning upright, its strips and compression), not the restoration
_LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323, 324,
                325, 338, 339, 340, 341, 530, 531, 532}  # fmt: skip
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}  # fmt: skip


def _readable_exif(image: Image.Image) -> Image.Exif:
    """The photo's EXIF if it can be written back; a camera's or an editor's damaged EXIF (a tag of the wrong
    type, a bad offset) is left out rather than failing the photo, which is restored all the same."""
    try:
        exif = image.getexif()
        Image.Exif().load(exif.tobytes())  # what encode_photo will write must be writable
        return exif
    except Exception:  # Pillow raises TypeError, struct.error, AttributeError... for damaged EXIF
        return Image.Exif()


def _upright(image: Image.Image, orientation: object) -> Image.Image:
    """The photo turned as its EXIF orientation says (ImageOps.exif_transpose without re-encoding the EXIF)."""
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


@contextmanager
def opened_image(source: Path | bytes, name: str) -> Iterator[Image.Image]:
    """``Image.open`` of a file or bytes, with Pillow's reasons for not opening one turned into sentences."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # --max_megapixels decides below
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError:
        fail(f"{name} declares more than {BOMB_MEGAPIXELS} megapixels (a decompression bomb, or a picture larger "
             f"than any photo); it was not read.")  # fmt: skip
    except UnidentifiedImageError:
        heic = "" if HEIF else "; HEIC needs the pillow-heif package (pip install -r requirements.txt)"
        fail(f"{name} is not an image that can be read (JPEG, PNG, WebP, HEIC, TIFF or BMP){heic}.")
    except OSError as err:
        fail(f"{name} cannot be read ({err.strerror or one_line(err)}).")
    except (ValueError, TypeError, SyntaxError, IndexError, KeyError) as err:  # a damaged header, as Pillow finds it
        fail(f"{name} cannot be read: it is damaged ({one_line(err)}); nothing was written for it.")
    with image:
        yield image


def check_header(image: Image.Image, name: str, max_megapixels: float) -> None:
    """Photos only: a known format, 8-bit samples, at most ``max_megapixels``, one picture (a camera's MPO: its first)."""
    fmt = _format(image)
    if fmt not in FORMATS:
        fail(f"{name} is a {image.format} image; restore photos in JPEG, PNG, WebP, HEIC, TIFF or BMP.")
    try:
        frames = getattr(image, "n_frames", 1)
    except (OSError, ValueError, TypeError, SyntaxError, EOFError) as err:  # a damaged later frame
        fail(f"{name} cannot be read: it is damaged ({one_line(err)}); nothing was written for it.")
    if frames > 1 and image.format != "MPO":
        fail(f"{name} holds {frames} pictures (an animation or a multi-page file), of which only the first would be "
             f"restored; save the picture to restore as a file of its own.")  # fmt: skip
    megapixels = image.width * image.height / 1e6
    if megapixels > BOMB_MEGAPIXELS:  # also where a program has lifted Pillow's own limit
        fail(f"{name} declares {megapixels:.0f} megapixels, more than {BOMB_MEGAPIXELS} (a decompression bomb, or "
             f"a picture larger than any photo); it was not read.")  # fmt: skip
    if megapixels > max_megapixels:
        fail(
            f"{name} has {megapixels:.0f} megapixels, more than --max_megapixels {max_megapixels:g}; scale it "
            f"down or raise the limit if the memory allows (about 0.25 GB per megapixel)."
        )
    if image.mode == "CMYK":
        fail(f"{name} is a CMYK image, made for print; save it as RGB to restore it.")
    raw = _rawmodes(image)  # a 16-bit PNG or TIFF opens as 8-bit "RGB": its tiles' rawmodes tell
    if image.mode not in EIGHT_BIT or any("16" in r for r in raw):
        fail(f"{name} has 16-bit or floating-point samples ({raw[0] if raw else image.mode}); save it as an 8-bit "
             f"image to restore it, since its restoration would be written with 8 bits.")  # fmt: skip


def _rawmodes(image: Image.Image) -> list[str]:
    """The rawmodes of the image's tiles: a PNG's tile arguments are its rawmode, a TIFF's start with it."""
    args = [t.args[0] if isinstance(t.args, tuple) and t.args else t.args for t in image.tile]
    return [a for a in args if isinstance(a, str)]


def _format(image: Image.Image) -> str | None:
    """Pillow's format name, a camera's JPEG with a preview picture (MPO, as many cameras write) as JPEG: its
    first picture is the photo, and its restoration is a plain JPEG."""
    return "JPEG" if image.format == "MPO" else image.format


def restored_path(source: Path, folder: Path | None = None) -> Path:
    """``IMG_1.JPG`` -> ``IMG_1_restored.JPG`` beside it or in ``folder``; a BMP's restoration is a PNG."""
    suffix = ".png" if source.suffix.lower() == ".bmp" else source.suffix
    return (folder or source.parent) / f"{source.stem}{RESTORED}{suffix}"


def encode_photo(rgb: np.ndarray, photo: Photo, quality: int) -> bytes:
    """The restored ``rgb`` as a file of ``photo``'s format (JPEG, WebP and HEIC at ``quality``, 4:4:4 JPEG
    chroma), with its EXIF, colour profile and alpha channel."""
    image = Image.fromarray(rgb)
    if photo.alpha is not None:
        image.putalpha(Image.fromarray(photo.alpha))
    fmt = "PNG" if photo.format == "BMP" else photo.format  # BMP holds no metadata
    options: dict = {"exif": photo.exif.tobytes()}
    if photo.icc_profile:
        options["icc_profile"] = photo.icc_profile
    if fmt == "JPEG":
        options |= {"quality": quality, "subsampling": 0}
    elif fmt in ("WEBP", "HEIF"):
        options["quality"] = quality
    elif fmt == "TIFF":
        options["compression"] = "tiff_lzw"
    attempts = [options]
    if fmt == "TIFF":  # libtiff's compressed writer refuses EXIF with sub-IFDs (date taken, GPS) and odd tag values:
        marker = Image.Exif()  # then uncompressed, and at worst with only the mark of this project
        marker[SOFTWARE_TAG] = SOFTWARE
        attempts += [options | {"compression": None}, options | {"compression": None, "exif": marker.tobytes()}]
    for number, attempt in enumerate(attempts, 1):
        buffer = io.BytesIO()
        try:
            image.save(buffer, format=fmt, **attempt)
            break
        except (RuntimeError, OSError, ValueError):
            if number == len(attempts):
                raise
    return buffer.getvalue()


def is_restored(path: Path) -> bool:
    """True for a photo this project wrote (its EXIF Software says so): the only kind ``--overwrite`` replaces."""
    try:
        with Image.open(path) as image:
            return image.getexif().get(SOFTWARE_TAG) == SOFTWARE
    except (OSError, ValueError, Image.DecompressionBombError):
        return False

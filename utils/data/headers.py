"""What an image file's header says, read without decoding: its format, its size and its EXIF orientation.

Everything here goes by the file's content (its first bytes), never by its name: a JPEG saved as
``photo.png`` is decoded as a JPEG, so it is sized and turned upright as one.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIFF_MAGIC = {b"II*\x00": "<", b"MM\x00*": ">"}
BIGTIFF_MAGIC = {b"II+\x00": "<", b"MM\x00+": ">"}
FORMATS = "PNG, JPEG, BMP or TIFF"  # the formats whose headers are read (and so the only ones decoded)
MAX_EXIF = 1 << 20  # an eXIf chunk larger than this is not read (EXIF data of a photo is a few kilobytes)
# EXIF orientations (tag 0x0112) that swap the stored width and height.
TRANSPOSING = (5, 6, 7, 8)


def image_kind(head: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"`` or ``"bigtiff"`` from a file's first bytes; None otherwise."""
    if head[:8] == PNG_MAGIC:
        return "png"
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] in TIFF_MAGIC:
        return "tiff"
    return "bigtiff" if head[:4] in BIGTIFF_MAGIC else None


def file_kind(path: str | Path) -> str | None:
    """``image_kind`` of a file; None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return image_kind(fh.read(8))
    except OSError:
        return None


def header_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) as stored, that a PNG, JPEG, BMP, TIFF or BigTIFF header declares, read without
    decoding; None if the format is another or the header is damaged."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
            kind = image_kind(head)
            if kind == "png" and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return height, width
            if kind == "bmp" and len(head) >= 26:
                if struct.unpack("<I", head[14:18])[0] == 12:  # the old OS/2 header: 16-bit sizes
                    width, height = struct.unpack("<HH", head[18:22])
                else:
                    width, height = struct.unpack("<ii", head[18:26])
                return abs(height), abs(width)
            if kind == "jpeg":
                return _jpeg_size(fh)
            if kind in ("tiff", "bigtiff"):
                return _tiff_size(fh, "<" if head[:2] == b"II" else ">", kind == "bigtiff")
    except (OSError, struct.error):
        return None
    return None


def _jpeg_size(fh) -> tuple[int, int] | None:
    """The size in a JPEG's start-of-frame segment, skipping the segments before it."""
    fh.seek(2)
    while True:
        byte = fh.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = fh.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
            continue
        length = struct.unpack(">H", fh.read(2))[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            _, height, width = struct.unpack(">BHH", fh.read(5))
            return height, width
        if marker == 0xDA:  # image data began without a frame header
            return None
        fh.seek(length - 2, os.SEEK_CUR)


def _tiff_size(fh, order: str, big: bool) -> tuple[int, int] | None:
    """ImageWidth and ImageLength of a TIFF's first image. A BigTIFF has 8-byte offsets and counts, and
    20-byte directory entries whose values may be 8-byte integers (type LONG8)."""
    offset, count, entry = (order + f for f in (("Q", "Q", "HHQ8s") if big else ("I", "H", "HHI4s")))
    fh.seek(8 if big else 4)
    fh.seek(struct.unpack(offset, fh.read(struct.calcsize(offset)))[0])
    size = {}
    for _ in range(struct.unpack(count, fh.read(struct.calcsize(count)))[0]):
        tag, kind, _, value = struct.unpack(entry, fh.read(struct.calcsize(entry)))
        if tag in (256, 257):
            width = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if width is None:
                return None
            size[tag] = struct.unpack(order + width, value[: struct.calcsize(order + width)])[0]
        if len(size) == 2:
            return size[257], size[256]
    return None


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation of a JPEG or PNG file, judged by content (1, upright, for other files or without
    the tag). OpenCV turns TIFF files upright itself, even with IMREAD_UNCHANGED, so they are left to it."""
    from PIL import Image  # reads the header only

    kind = file_kind(path)
    try:
        if kind == "png":
            data = _png_exif(path)
            value = 1 if data is None else _load_exif(data).get(0x0112, 1)
        elif kind == "jpeg":
            Image.MAX_IMAGE_PIXELS = None  # the project's own limit (max_pixels) was checked before any decoding
            with Image.open(path) as im:
                value = im.getexif().get(0x0112, 1)
        else:
            return 1
    except Exception:  # an unreadable header is reported by the decoder
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _load_exif(data: bytes):
    from PIL import Image

    exif = Image.Exif()
    exif.load(data)
    return exif


def _png_exif(path: str | Path) -> bytes | None:
    """The bytes of a PNG's eXIf chunk, found by walking the chunks (their data skipped, not read): it may
    come before or after the image data."""
    with open(path, "rb") as fh:
        fh.seek(len(PNG_MAGIC))
        while len(head := fh.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                return fh.read(length) if length <= MAX_EXIF else None
            if kind == b"IEND":
                return None
            fh.seek(length + 4, os.SEEK_CUR)  # the chunk's data and its CRC
    return None

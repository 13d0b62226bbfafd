"""Phone photos: EXIF orientation honoured when reading, sizing and restoring."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from utils.data.images import inspect_image, read_rgb


def _photo(path, orientation: int) -> np.ndarray:
    """A 40x24 JPEG whose stored pixels need ``orientation`` to be upright; returns what PIL shows upright."""
    rng = np.random.default_rng(orientation)
    pixels = np.kron(rng.integers(0, 256, (5, 3, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, quality=100, exif=exif.tobytes())
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_reads_upright(tmp_path, orientation):
    path = tmp_path / f"photo_{orientation}.jpg"
    expected = _photo(path, orientation)
    got = read_rgb(path)
    assert got.shape == expected.shape
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 2  # two JPEG decoders
    assert inspect_image(path) == (expected.shape[:2], None)
    assert (expected.shape[:2] == (24, 40)) == (orientation >= 5)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_tiff_is_upright_once(tmp_path, orientation):
    """OpenCV turns TIFF files upright itself (the project must not turn them again) but cannot decode
    the transposing orientations, which Pillow reads."""
    pixels = np.random.default_rng(orientation).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.tif"
    image.save(path, exif=exif.tobytes())
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(read_rgb(path), expected)
    assert inspect_image(path) == (expected.shape[:2], None)

"""A photo is read upright with its metadata and written back in its own format with that metadata."""

import io

import numpy as np
import pytest
from PIL import Image

from photo_helpers import CAMERA, night_rgb, save_photo
from utils.core.errors import UserError
from utils.photo.files import SOFTWARE, encode_photo, is_restored, read_photo, restored_path


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_exif_survives_and_the_photo_is_turned_upright(tmp_path):
    rgb = night_rgb(40, 60)
    path = save_photo(tmp_path / "p.jpg", rgb, orientation=6, quality=95)  # "rotate 90 degrees clockwise to view"
    photo = read_photo(path, "p.jpg", 50)
    assert photo.rgb.shape == (60, 40, 3) and photo.format == "JPEG"
    upright = np.rot90(np.asarray(Image.open(path).convert("RGB")), k=-1)
    assert np.abs(photo.rgb.astype(int) - upright).max() == 0
    written = _decoded(encode_photo(photo.rgb, photo, quality=95))
    exif = written.getexif()
    assert written.format == "JPEG" and written.size == (40, 60)
    assert {tag: exif[tag] for tag in CAMERA} == CAMERA
    assert exif[0x0112] == 1 and exif[0x0131] == SOFTWARE


@pytest.mark.parametrize("suffix, fmt", [(".png", "PNG"), (".webp", "WEBP"), (".tif", "TIFF"), (".heic", "HEIF")])
def test_each_format_is_written_in_its_own_format(tmp_path, suffix, fmt):
    rgb = night_rgb()
    path = save_photo(tmp_path / f"p{suffix}", rgb, **({"quality": 95} if fmt in ("WEBP", "HEIF") else {}))
    photo = read_photo(path, path.name, 50)
    assert photo.format == fmt
    written = _decoded(encode_photo(photo.rgb, photo, quality=95))
    assert written.format == fmt and written.getexif().get(0x0110) == "Model X"
    lossless = fmt in ("PNG", "TIFF")
    assert np.abs(np.asarray(written.convert("RGB")).astype(int) - photo.rgb).max() <= (0 if lossless else 40)


def test_alpha_is_kept_and_bmp_becomes_png(tmp_path):
    rgba = np.dstack([night_rgb(), np.linspace(0, 255, 48 * 64).reshape(48, 64).astype(np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    photo = read_photo(tmp_path / "a.png", "a.png", 50)
    written = _decoded(encode_photo(photo.rgb, photo, quality=95))
    assert written.mode == "RGBA" and np.array_equal(np.asarray(written)[..., 3], rgba[..., 3])
    Image.fromarray(night_rgb()).save(tmp_path / "b.bmp")
    bmp = read_photo(tmp_path / "b.bmp", "b.bmp", 50)
    assert _decoded(encode_photo(bmp.rgb, bmp, quality=95)).format == "PNG"
    assert restored_path(tmp_path / "b.bmp").name == "b_restored.png"
    assert restored_path(tmp_path / "IMG_1.JPG", tmp_path / "out") == tmp_path / "out" / "IMG_1_restored.JPG"


def _sixteen_bit(path):
    import cv2

    cv2.imwrite(str(path), (night_rgb().astype(np.uint16) * 257))


def _truncated(path):
    data = (save_photo(path.with_suffix(".full"), night_rgb(200, 300), format="JPEG")).read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _bomb(path):
    Image.new("L", (20000, 20000)).save(path, optimize=True)  # 400 megapixels in a small file


@pytest.mark.parametrize(
    "make, name, words",
    [
        (_sixteen_bit, "s.png", "16-bit"),
        (_truncated, "t.jpg", "truncated or corrupt"),
        (lambda p: p.write_text("not a photo"), "n.jpg", "not an image that can be read"),
        (lambda p: Image.new("CMYK", (8, 8)).save(p), "c.jpg", "CMYK"),
        (lambda p: Image.new("RGB", (8, 8)).save(p, format="GIF"), "g.gif", "GIF image"),
        (_bomb, "b.png", "decompression bomb"),
        (lambda p: Image.new("RGB", (3000, 2000)).save(p), "l.png", "more than --max_megapixels 5"),
    ],
)
def test_photos_that_cannot_be_restored_faithfully_are_refused_by_name(tmp_path, make, name, words):
    make(tmp_path / name)
    with pytest.raises(UserError) as err:
        read_photo(tmp_path / name, name, 5)
    assert name in str(err.value) and words in str(err.value)


def test_only_a_photo_this_project_wrote_counts_as_restored(tmp_path):
    photo = read_photo(save_photo(tmp_path / "p.jpg", night_rgb()), "p.jpg", 50)
    (tmp_path / "ours.jpg").write_bytes(encode_photo(photo.rgb, photo, quality=90))
    assert is_restored(tmp_path / "ours.jpg")
    assert not is_restored(tmp_path / "p.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    assert not is_restored(tmp_path / "text.jpg")


def test_a_bomb_is_refused_also_where_pillows_limit_was_lifted(tmp_path, monkeypatch):
    """Another module of a program may set Pillow's MAX_IMAGE_PIXELS to None (this project's images module sets
    its own): the photo path keeps its own limit."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    _bomb(tmp_path / "b.png")
    with pytest.raises(UserError, match="b.png declares 400 megapixels, more than 178 .a decompression bomb"):
        read_photo(tmp_path / "b.png", "b.png", 50)

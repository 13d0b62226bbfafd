"""What a careless or hostile user does: damaged EXIF, TIFFs as cameras and editors write them, 16-bit TIFFs,
animations, a photo given twice, flipped arrays, and HTTP requests that no browser sends."""

import io
import socket

import numpy as np
import pytest
from PIL import Image
from test_page import page  # noqa: F401 - the running server fixture

import restore as restore_script
from conftest import run_cli
from photo_helpers import night_rgb, save_photo
from utils.core.errors import UserError
from utils.photo import restore_image
from utils.photo.files import SOFTWARE, encode_photo, read_photo


def _damaged_exif_jpeg() -> bytes:
    """A JPEG whose EXIF holds a string where a number belongs: Pillow reads it but cannot write it back."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "PhoneCo", 6
    exif.get_ifd(0x8825)[2] = (1.0, 2.0, 3.0)
    buffer = io.BytesIO()
    Image.fromarray(night_rgb(16, 16)).save(buffer, "JPEG", exif=exif.tobytes())
    data = bytearray(buffer.getvalue())
    at = data.find(b"\x00\x02\x00\x05")  # the GPS latitude entry: tag 2, type RATIONAL
    data[at + 2 : at + 4] = b"\x00\x02"  # ... now type ASCII
    return bytes(data)


def test_a_photo_with_damaged_exif_is_restored_without_it():
    photo = read_photo(_damaged_exif_jpeg(), "d.jpg", 50)
    written = Image.open(io.BytesIO(encode_photo(photo.rgb, photo, 90)))
    assert written.getexif().get(0x0131) == SOFTWARE  # still marked as ours, so --overwrite can replace it


@pytest.mark.parametrize("sub_ifd", [None, 0x8769, 0x8825])
def test_a_tiff_with_an_orientation_or_date_taken_or_gps_is_written(tmp_path, sub_ifd):
    exif = Image.Exif()
    exif[0x010F], exif[0x0112] = "PhoneCo", 6
    if sub_ifd == 0x8769:
        exif.get_ifd(0x8769)[0x9003] = "2026:01:02 03:04:05"
    elif sub_ifd == 0x8825:
        exif.get_ifd(0x8825)[2] = (1.0, 2.0, 3.0)
    Image.fromarray(night_rgb(48, 64)).save(tmp_path / "p.tif", exif=exif.tobytes())
    photo = read_photo(tmp_path / "p.tif", "p.tif", 50)
    assert photo.rgb.shape == (64, 48, 3)
    written = Image.open(io.BytesIO(encode_photo(photo.rgb, photo, 90)))
    assert written.size == (48, 64) and np.array_equal(np.asarray(written.convert("RGB")), photo.rgb)
    assert written.getexif().get(0x010F) == "PhoneCo" and written.getexif().get(0x0131) == SOFTWARE
    if sub_ifd:
        assert dict(written.getexif().get_ifd(sub_ifd))


def test_a_16_bit_tiff_and_an_animation_are_refused_and_a_camera_mpo_is_a_jpeg(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "16.tif", np.full((8, 8, 3), 40000, np.uint16), photometric="rgb")
    with pytest.raises(UserError, match="16-bit"):
        read_photo(tmp_path / "16.tif", "16.tif", 50)
    frames = [Image.fromarray(night_rgb(16, 16, seed=s)) for s in (1, 2)]
    frames[0].save(tmp_path / "a.png", save_all=True, append_images=frames[1:])
    with pytest.raises(UserError, match="holds 2 pictures"):
        read_photo(tmp_path / "a.png", "a.png", 50)
    frames[0].save(tmp_path / "m.jpg", format="MPO", save_all=True, append_images=frames[1:])
    assert read_photo(tmp_path / "m.jpg", "m.jpg", 50).format == "JPEG"


def test_a_photo_given_twice_or_with_its_folder_is_restored_once(tmp_path, tiny_weights, capsys):
    save_photo(tmp_path / "a.jpg", night_rgb(24, 32))
    args = [tmp_path, tmp_path / "a.jpg", f"{tmp_path}/../{tmp_path.name}/a.jpg", "--weights", tiny_weights]
    code, _, err = run_cli(restore_script, [*args, "--no_progress"], capsys)
    assert code == 0 and "1 of 1 photo(s) restored" in err, err


def test_restore_image_takes_a_flipped_view_and_refuses_an_empty_image(tiny_weights):
    rgb = night_rgb(24, 32)
    assert np.array_equal(restore_image(rgb[:, ::-1], tiny_weights), restore_image(rgb[:, ::-1].copy(), tiny_weights))
    with pytest.raises(ValueError, match="with pixels"):
        restore_image(np.zeros((0, 0, 3), np.uint8), tiny_weights)


def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("length", [b"abc", b"1.5", b"-5", b"\xc2\xb2"])
def test_a_content_length_that_is_no_number_is_answered(page, length):  # noqa: F811
    base, _ = page
    answer = _raw(base, b"POST /api/photos HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\nxyz")
    assert answer.startswith(b"HTTP/1.0 413") and b"no valid Content-Length" in answer


def test_an_upload_that_pillow_fails_on_is_answered(page):  # noqa: F811
    base, gallery = page
    data = _damaged_exif_jpeg()
    head = f"POST /api/photos HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
    assert _raw(base, head + data).startswith(b"HTTP/1.0 202")


def test_an_empty_host_is_refused(tiny_weights):
    from utils.photo.server import start_server
    from utils.photo.settings import PageSettings, PhotoSettings

    with pytest.raises(UserError, match="--host is empty"):
        start_server(PhotoSettings(weights=str(tiny_weights)), PageSettings(host="", port=0))


def test_max_megapixels_decides_up_to_pillows_own_limit(tmp_path):
    """A 96-megapixel panorama passes Pillow's warning threshold (89 MP): --max_megapixels decides, and
    only beyond Pillow's hard limit (178 MP) is a picture a decompression bomb."""
    from utils.photo.files import check_header, opened_image

    Image.new("L", (12000, 8000)).save(tmp_path / "pano.png")
    with opened_image(tmp_path / "pano.png", "pano.png") as image:
        check_header(image, "pano.png", 120)  # accepted
        with pytest.raises(UserError, match="pano.png has 96 megapixels, more than --max_megapixels 50"):
            check_header(image, "pano.png", 50)


def test_an_upload_from_another_web_site_is_refused(page):  # noqa: F811
    base, gallery = page
    host = base.removeprefix("http://")
    for origin, status in [("http://evil.example", 403), (f"http://{host}", 400)]:  # 400: not a photo, but heard
        with socket.create_connection(host.split(":")) as conn:
            conn.sendall(f"POST /api/photos HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Length: 5\r\n"
                         f"Content-Type: text/plain\r\n\r\nhello".encode())  # fmt: skip
            assert conn.recv(200).split(b" ")[1] == str(status).encode()
    assert list(gallery.root.iterdir()) == []


def test_a_link_under_the_restored_name_is_named_with_the_way_out(tmp_path, tiny_weights, capsys):
    save_photo(tmp_path / "p.jpg", night_rgb(24, 32))
    (tmp_path / "p_restored.jpg").symlink_to(tmp_path / "elsewhere.jpg")
    code, _, err = run_cli(restore_script, [tmp_path / "p.jpg", "--weights", tiny_weights, "--no_progress"], capsys)
    assert code == 2 and "p_restored.jpg is a symbolic link; move it away, or write the restorations elsewhere with --output DIR" in err  # fmt: skip

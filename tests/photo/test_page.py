"""restore.py --serve: the page's routes over real HTTP on 127.0.0.1, and the page itself in headless Chromium."""

import io
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from photo_helpers import CAMERA, night_rgb, save_photo
from utils.photo import restore_image
from utils.photo.server import start_server
from utils.photo.settings import PageSettings, PhotoSettings


@pytest.fixture
def page(tiny_weights):
    """A running server on a free port of 127.0.0.1 restoring with the tiny model; stopped after the test."""
    settings = PhotoSettings(weights=str(tiny_weights))
    server, gallery = start_server(settings, PageSettings(port=0, max_upload_mb=1, max_photos=2))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", gallery
    server.shutdown()
    server.server_close()
    gallery.close()
    thread.join(timeout=10)


def _call(url, data=None, name="photo.png"):
    request = urllib.request.Request(url, data=data, headers={"X-File-Name": name} if data is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def _wait_done(base, key):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(_call(f"{base}/api/photos/{key}")[1])
        if status["state"] in ("done", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError("the photo was not restored within 60 s")


def test_an_upload_is_restored_and_downloaded_with_its_exif(page, tiny_weights, tmp_path):
    base, gallery = page
    rgb = night_rgb(40, 56)
    data = save_photo(tmp_path / "p.png", rgb).read_bytes()
    code, body, _ = _call(f"{base}/api/photos", data, "my%20lamp.png")
    assert code == 202
    key = json.loads(body)["id"]
    done = {"name": "my lamp.png", "state": "done", "progress": 1.0, "error": "", "note": ""}
    assert _wait_done(base, key) == done
    code, body, headers = _call(f"{base}/api/photos/{key}/download")
    assert code == 200 and "my%20lamp_restored.png" in headers["Content-Disposition"]
    restored = Image.open(io.BytesIO(body))
    assert np.array_equal(np.asarray(restored.convert("RGB")), restore_image(rgb, tiny_weights))
    assert {tag: restored.getexif()[tag] for tag in CAMERA} == CAMERA
    for side in ("before", "after"):
        code, body, headers = _call(f"{base}/api/photos/{key}/{side}.jpg")
        assert code == 200 and Image.open(io.BytesIO(body)).size == (56, 40)
    assert sorted(p.name for p in (gallery.root / key).iterdir()) == ["after.jpg", "before.jpg", "result", "upload"]


def test_a_photo_without_lights_comes_back_with_the_reason(page, tmp_path):
    """--light_reach (on by default) drops every change far from clipped lights: the page says why the photo is
    unchanged instead of leaving the user to wonder."""
    base, _ = page
    dark = np.full((24, 32, 3), 40, np.uint8)
    code, body, _ = _call(f"{base}/api/photos", save_photo(tmp_path / "dark.png", dark).read_bytes(), "dark.png")
    status = _wait_done(base, json.loads(body)["id"])
    assert status["state"] == "done" and status["note"].startswith("no clipped lights, so the model left it")
    assert "--light_reach" not in status["note"]  # a flag the page's user cannot set
    restored = Image.open(io.BytesIO(_call(f"{base}/api/photos/{json.loads(body)['id']}/download")[1]))
    assert np.array_equal(np.asarray(restored.convert("RGB")), dark)


@pytest.mark.parametrize(
    "data, code, words",
    [
        (b"hello", 400, "is not an image that can be read"),
        (b"x" * 1_100_000, 413, "more than the 1 MB allowed"),
        (None, 400, "decompression bomb"),
    ],
    ids=["not a photo", "too large", "bomb"],
)
def test_bad_uploads_get_a_sentence_and_the_server_goes_on(page, tmp_path, data, code, words):
    base, gallery = page
    if data is None:
        Image.new("L", (20000, 20000)).save(tmp_path / "bomb.png", optimize=True)
        data = (tmp_path / "bomb.png").read_bytes()
    got, body, _ = _call(f"{base}/api/photos", data, "upload.png")
    assert got == code and words in json.loads(body)["error"]
    assert list(gallery.root.iterdir()) == []  # nothing kept of a refused upload
    assert _call(f"{base}/")[0] == 200
    assert _call(f"{base}/api/photos/nonsense")[0] == 404


def test_old_photos_are_removed_and_the_folder_goes_with_the_server(tiny_weights, tmp_path):
    settings = PhotoSettings(weights=str(tiny_weights))
    server, gallery = start_server(settings, PageSettings(port=0, max_photos=2))
    data = save_photo(tmp_path / "p.png", night_rgb(24, 32)).read_bytes()
    keys = []
    for _ in range(3):
        keys.append(gallery.add("p.png", data))
        deadline = time.monotonic() + 60
        while gallery.get(keys[-1]).state != "done" and time.monotonic() < deadline:
            time.sleep(0.05)
    assert gallery.get(keys[0]) is None and not (gallery.root / keys[0]).exists()
    assert [gallery.get(k).state for k in keys[1:]] == ["done", "done"]
    root = gallery.root
    server.server_close()
    gallery.close()
    assert not root.exists()


def test_the_page_in_a_real_browser(page, tmp_path):
    """Headless Chromium picks a photo on the page, waits for it, checks both sides of the slider and follows
    the download link. Skipped where Chromium and its driver are missing, except in CI (``.ci/run`` installs them)."""
    pytest.importorskip("selenium")
    from scripts.page_picture import chromium, drop_photo, move_slider

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    base, _ = page
    save_photo(tmp_path / "lamp.jpg", night_rgb(240, 320), quality=95)
    browser = chromium()
    try:
        drop_photo(browser, base, tmp_path / "lamp.jpg", timeout=60)
        widths = "return [...document.querySelectorAll('.compare img')].map(i => i.naturalWidth)"
        assert browser.execute_script(widths) == [320, 320]  # after and before, full width
        move_slider(browser, 20)
        clip = browser.execute_script("return getComputedStyle(document.querySelector('img.before')).clipPath")
        assert "80%" in clip, clip  # the before picture shows on the left 20% only
        link = browser.find_element("css selector", "a.download").get_attribute("href")
        code, body, _ = _call(link)
        restored = Image.open(io.BytesIO(body))
        assert code == 200 and restored.format == "JPEG" and restored.getexif()[0x0110] == CAMERA[0x0110]
        save_photo(tmp_path / "dark.jpg", np.full((24, 32, 3), 40, np.uint8))
        drop_photo(browser, base, tmp_path / "dark.jpg", timeout=60)
        note = browser.find_element("css selector", ".card.done .state").text
        assert note.startswith("no clipped lights, so the model left it unchanged"), note
    finally:
        browser.quit()

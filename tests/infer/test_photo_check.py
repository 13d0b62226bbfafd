"""The no-reference check of restored photos: glare removed around the lights, lamps kept, colours far away."""

import math

import cv2
import numpy as np

from conftest import run_cli
from scripts import photo_check
from utils.infer.photo_check import FAR, photo_scores


def _night_photo(size: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """A dark street-like photo with one clipped lamp and its glow, and the same photo without the glow."""
    clean = np.full((size, size, 3), (30, 40, 25), np.uint8)  # dark foliage green
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    glow = (120 * np.exp(-r / 25))[..., None] * np.array([1.0, 0.8, 0.5])  # a warm halo
    photo = np.clip(clean + glow, 0, 255).astype(np.uint8)
    photo[r <= 4] = 255
    clean[r <= 4] = 255
    return photo, clean


def test_removing_the_glow_scores_as_removal_and_changes_nothing_far_away():
    photo, without_glow = _night_photo()
    s = photo_scores(photo, without_glow)
    half = photo_scores(photo, ((photo.astype(int) + without_glow) // 2).astype(np.uint8))
    assert s.glare_removed > 0.2 and abs(half.glare_removed - s.glare_removed / 2) < 0.01
    assert s.cores_kept == 1.0
    assert s.colour_change < 0.5  # the glow's faint tail beyond 96 pixels
    unchanged = photo_scores(photo, photo)
    assert unchanged.glare_removed == 0.0 and unchanged.colour_change == 0.0


def test_a_colour_shift_far_from_the_lights_and_a_dimmed_lamp_are_seen():
    photo, _ = _night_photo()
    shifted = photo.copy()
    yy, xx = np.mgrid[: photo.shape[0], : photo.shape[1]]
    far = np.hypot(yy - 160, xx - 160) > FAR + 10
    shifted[far] = np.clip(shifted[far].astype(int) + [25, 0, 0], 0, 255)  # redder, far from the lamp
    shifted[np.hypot(yy - 160, xx - 160) <= 4] = 128  # the lamp itself halved
    s = photo_scores(photo, shifted)
    assert s.colour_change > 5
    assert abs(s.cores_kept - 128 / 255) < 1e-6


def test_distances_grow_with_a_photo_larger_than_the_working_size():
    """On a photo with a long side of 2048 the ring reaches 192 pixels: a change 100 to 150 pixels from the lamp
    is glow removed, not a colour change far from it (it would be at 1024)."""
    photo = np.full((1024, 2048, 3), 40, np.uint8)
    photo[510:515, 1000:1005] = 255  # a clipped lamp
    yy, xx = np.mgrid[:1024, :2048]
    band = (np.hypot(yy - 512, xx - 1002) > 100) & (np.hypot(yy - 512, xx - 1002) < 150)
    restored = photo.copy()
    restored[band] = 30  # glow taken away
    s = photo_scores(photo, restored)
    assert s.colour_change == 0.0 and s.glare_removed > 0
    half = photo_scores(photo[:, :1024], restored[:, :1024])  # the same lamp and change in a 1024 photo
    assert half.colour_change > 0


def test_a_photo_without_lights_is_judged_on_colour_alone():
    flat = np.full((64, 64, 3), 90, np.uint8)
    s = photo_scores(flat, flat)
    assert math.isnan(s.glare_removed) and math.isnan(s.cores_kept) and s.colour_change == 0.0


def test_the_command_prints_each_photo_and_refuses_a_missing_restoration(tmp_path, capsys):
    photo, without_glow = _night_photo(200)
    (tmp_path / "photos").mkdir()
    (tmp_path / "restored").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "street.jpg"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])  # fmt: skip
    argv = ["--photos", tmp_path / "photos", "--restored", tmp_path / "restored"]
    code, _, err = run_cli(photo_check, argv, capsys)
    assert code == 2 and "holds neither street_restored.jpg nor street.png" in err and err.count("\n") == 1
    cv2.imwrite(str(tmp_path / "restored" / "street.png"), cv2.cvtColor(without_glow, cv2.COLOR_RGB2BGR))
    code, out, _ = run_cli(photo_check, argv, capsys)
    assert code == 0 and "street.jpg" in out and out.splitlines()[-1].startswith("mean")


def test_restore_py_outputs_beside_the_photos_are_found_and_drawn(tmp_path, capsys):
    """restore.py writes NAME_restored.EXT beside each photo: the check finds it there, does not take it for a
    photo of its own, and draws the photo, its restoration and both at the lamp."""
    photo, without_glow = _night_photo(200)
    cv2.imwrite(str(tmp_path / "street.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "street_restored.png"), cv2.cvtColor(without_glow, cv2.COLOR_RGB2BGR))
    argv = ["--photos", tmp_path, "--restored", tmp_path, "--sheet", tmp_path / "sheet.png"]
    code, out, _ = run_cli(photo_check, argv, capsys)
    assert code == 0 and len([line for line in out.splitlines() if line.startswith("street")]) == 1
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet is not None and sheet.shape[1] > 3 * sheet.shape[0]  # one row of four square pictures

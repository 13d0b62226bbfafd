"""restore.py on files and folders: results beside the photos or in --output, every mistake one sentence."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

import restore as restore_script
from conftest import ROOT, run_cli, tree_hashes
from photo_helpers import CAMERA, night_rgb, save_photo
from utils.infer.keep_lights import distance_to, light_cores
from utils.photo import restore_image


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    save_photo(folder / "a.jpg", night_rgb(48, 64, seed=1), quality=95)
    save_photo(folder / "b.png", night_rgb(40, 56, seed=2))
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_a_folder_is_restored_beside_its_photos_with_their_exif(photos, tiny_weights, capsys):
    code, _, err = run_cli(restore_script, [photos, "--weights", tiny_weights, "--no_progress"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "a_restored.jpg", "b.png", "b_restored.png", "notes.txt"]  # fmt: skip
    assert "skipping 1 file(s) that are not photos" in err and "2 of 2 photo(s) restored" in err
    exif = Image.open(photos / "a_restored.jpg").getexif()
    assert {tag: exif[tag] for tag in CAMERA} == CAMERA
    rgb = np.asarray(Image.open(photos / "b.png").convert("RGB"))
    expected = restore_image(rgb, tiny_weights)  # the function the CLI calls, with the same defaults
    assert np.array_equal(np.asarray(Image.open(photos / "b_restored.png").convert("RGB")), expected)
    assert not np.array_equal(expected, rgb)
    code, _, err = run_cli(restore_script, [photos, "--weights", tiny_weights, "--no_progress"], capsys)
    assert code == 2 and "a_restored.jpg already exists; pass --overwrite" in err  # restorations are not inputs
    code, _, err = run_cli(restore_script, [photos, "--weights", tiny_weights, "--no_progress", "--overwrite"], capsys)
    assert code == 0 and "2 of 2" in err


def test_single_files_into_an_output_folder(photos, tiny_weights, tmp_path, capsys):
    out = tmp_path / "out"
    args = [photos / "a.jpg", photos / "b.png", "--output", out, "--weights", tiny_weights, "--no_progress"]
    code, _, err = run_cli(restore_script, args, capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["a_restored.jpg", "b_restored.png"]
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg", "b.png", "notes.txt"]


def test_keep_lights_is_on_by_default_and_its_old_flag_still_works(photos, tiny_weights, tmp_path, capsys):
    """--keep_lights, from the days it was off by default, is accepted and changes nothing; --no_keep_lights does."""
    rgb = night_rgb(48, 64, seed=3)
    rgb[20:28, 30:38] = 255  # a clipped lamp, which the tiny model changes
    save_photo(photos / "lamp.png", rgb)
    restored = {}
    for flag in ("--keep_lights", "--no_keep_lights", None):
        out = tmp_path / str(flag)
        args = [
            photos / "lamp.png",
            "--output",
            out,
            "--weights",
            tiny_weights,
            "--no_progress",
            *([flag] if flag else []),
        ]
        code, _, err = run_cli(restore_script, args, capsys)
        assert code == 0, err
        restored[flag] = np.asarray(Image.open(out / "lamp_restored.png"))
    assert np.array_equal(restored["--keep_lights"], restored[None])
    assert (restored[None][22:26, 32:36] == 255).all() and not np.array_equal(
        restored["--no_keep_lights"], restored[None]
    )


def test_a_broken_photo_is_named_and_the_others_are_still_restored(photos, tiny_weights, capsys):
    data = save_photo(photos / "c.jpg", night_rgb(200, 300), quality=95).read_bytes()
    (photos / "c.jpg").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (8, 8)).save(photos / "d.webp")
    (photos / "d.webp").write_bytes(b"RIFF....WEBPVP8 broken")
    code, _, err = run_cli(restore_script, [photos, "--weights", tiny_weights, "--no_progress"], capsys)
    assert code == 2
    assert "c.jpg is truncated or corrupt" in err and "d.webp cannot be read" in err
    assert "2 of 4 photo(s) restored" in err
    assert sorted(p.name for p in photos.iterdir() if "_restored" in p.name) == ["a_restored.jpg", "b_restored.png"]
    assert not [p for p in photos.iterdir() if p.name.startswith(".")]  # nothing half-written or left behind


@pytest.mark.parametrize(
    "case, words",
    [
        (["photos/a.jpg", "--weights", "wieghts/typo.pth"], "--weights wieghts/typo.pth does not exist (looked for"),
        (["photos/a.jpg", "--weights", "photos"], "--weights photos is a folder"),
        (["photos/a.jpg", "--weights", ""], "--weights is empty; leave it out"),
        (["missing.jpg"], "missing.jpg does not exist; give a photo or a folder"),
        ([], "give the photos or folders to restore"),
        (["photos/notes.txt"], "notes.txt is not an image that can be read"),
        (["photos/a.jpg", "--output", "photos/b.png"], "--output photos/b.png is a file, not a folder"),
        (["photos/a.jpg", "--quality", "0"], "--quality must be at least 1"),
        (["photos/a.jpg", "--serve"], "give either photos or --serve"),
        (["empty"], "folder empty holds no photos"),
    ],
)
def test_mistakes_are_one_sentence_and_write_nothing(photos, tiny_weights, tmp_path, monkeypatch, capsys, case, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    before = tree_hashes(tmp_path)
    weights = [] if "--weights" in case else ["--weights", tiny_weights]
    code, out, err = run_cli(restore_script, [*case, *weights, "--no_progress"], capsys)
    assert code == 2 and words in err, err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert tree_hashes(tmp_path) == before


def test_the_starter_model_is_found_from_any_folder_and_named_when_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_photo(tmp_path / "p.jpg", night_rgb(24, 32))
    code, _, err = run_cli(restore_script, ["p.jpg", "--no_progress"], capsys)  # the shipped starter, found in ROOT
    assert code == 0, err
    assert (tmp_path / "p_restored.jpg").is_file()
    fake_repo = tmp_path / "repo"
    (fake_repo / "pretrained").mkdir(parents=True)
    monkeypatch.setattr("utils.photo.settings.REPO", fake_repo)
    code, _, err = run_cli(restore_script, ["p.jpg", "--no_progress", "--overwrite"], capsys)
    assert code == 2 and "the shipped starter model" in err and "git checkout pretrained" in err


def test_an_earlier_file_that_is_not_a_restoration_is_never_replaced(photos, tiny_weights, capsys):
    shutil.copy(photos / "a.jpg", photos / "a_restored.jpg")  # the user's own file under that name
    before = (photos / "a_restored.jpg").read_bytes()
    args = [photos / "a.jpg", "--weights", tiny_weights, "--no_progress", "--overwrite"]
    code, _, err = run_cli(restore_script, args, capsys)
    assert code == 2 and "is not a photo restored by restore.py of this project" in err
    assert (photos / "a_restored.jpg").read_bytes() == before


def test_progress_lines_in_a_log(photos, tiny_weights, capsys, monkeypatch):
    monkeypatch.setattr("utils.photo.progress.LOG_EVERY", 0.01)
    code, _, err = run_cli(restore_script, [photos, "--weights", tiny_weights], capsys)
    assert code == 0
    assert "restoring 2 photo(s), 0.0 megapixels: about" in err
    lines = [line for line in err.splitlines() if line.startswith("restoring: ")]
    assert lines and "photos done)" in lines[-1]
    assert os.path.isfile(photos / "a_restored.jpg") and ROOT.is_dir()


def test_darken_only_drops_what_the_model_adds_and_nothing_else(tiny_weights):
    """Flare only adds light: with darken_only (the photo default) no pixel comes out brighter than the photo's,
    and every pixel the model darkened is as it was without it."""
    rgb = night_rgb(48, 64, seed=4)
    free = restore_image(rgb, tiny_weights, keep_lights=False, darken_only=False, min_change=0, light_reach=0)
    darker = restore_image(rgb, tiny_weights, keep_lights=False, min_change=0, light_reach=0).astype(int)
    free = free.astype(int)
    assert (free > rgb).any() and (free < rgb).any()  # the tiny model brightens some pixels and darkens others
    assert np.array_equal(darker, np.minimum(free, rgb))


def test_min_change_leaves_small_changes_out(photos, tiny_weights, tmp_path, capsys):
    """--min_change (4 levels by default) drops what the model changes by less; 255 drops every change."""
    rgb = np.asarray(Image.open(photos / "b.png").convert("RGB"))
    restored = {}
    for levels in ("0", "4", "255"):
        args = [photos / "b.png", "--output", tmp_path / levels, "--weights", tiny_weights, "--no_progress"]
        assert run_cli(restore_script, [*args, "--min_change", levels], capsys)[0] == 0
        restored[levels] = np.asarray(Image.open(tmp_path / levels / "b_restored.png").convert("RGB")).astype(int)
    assert np.array_equal(restored["4"], restore_image(rgb, tiny_weights))  # the default
    assert np.array_equal(restored["255"], rgb)
    unchanged = [(restored[levels] == rgb).all(axis=2).mean() for levels in ("0", "4")]
    assert unchanged[0] < unchanged[1]
    code, _, err = run_cli(restore_script, [photos, "--min_change", "-1", "--weights", tiny_weights], capsys)
    assert code == 2 and "--min_change" in err


def test_light_reach_leaves_the_photo_as_it_was_away_from_its_lights(photos, tiny_weights, tmp_path, capsys):
    """--light_reach (0.12 of the long side by default): nothing changes further than that from a clipped light;
    a reach that covers the whole photo is the same as none; a photo without lights comes back as it was."""
    rgb = np.asarray(Image.open(photos / "b.png").convert("RGB"))
    restored = {}
    for reach in ("0", "0.12", "2"):
        args = [photos / "b.png", "--output", tmp_path / reach, "--weights", tiny_weights, "--min_change", "0"]
        args += ["--no_darken_only", "--no_progress"]  # so that the tiny model changes most pixels
        code, _, err = run_cli(restore_script, [*args, "--light_reach", reach], capsys)
        assert code == 0 and "no clipped lights" not in err  # the photo has a lamp
        restored[reach] = np.asarray(Image.open(tmp_path / reach / "b_restored.png").convert("RGB"))
    far = distance_to(light_cores(rgb)) >= 0.12 * max(rgb.shape[:2])
    assert far.mean() > 0.5 and np.array_equal(restored["0.12"][far], rgb[far])
    assert not np.array_equal(restored["0"][far], rgb[far])  # without it the tiny model changes them
    assert np.array_equal(restored["2"], restored["0"])  # within 2 x 56 / 2 pixels of the lamp: everything
    assert np.array_equal(restored["0.12"], restore_image(rgb, tiny_weights, darken_only=False, min_change=0))
    assert np.array_equal(
        restored["0"], restore_image(rgb, tiny_weights, darken_only=False, min_change=0, light_reach=0)
    )
    dark = tmp_path / "dark.png"
    Image.fromarray(np.full((24, 32, 3), 40, np.uint8)).save(dark)
    code, _, err = run_cli(restore_script, [dark, "--output", tmp_path / "dark", *args[3:]], capsys)
    assert code == 0 and "no clipped lights, so the model left it unchanged" in err and "--light_reach 0" in err
    assert np.array_equal(np.asarray(Image.open(tmp_path / "dark" / "dark_restored.png")), np.full((24, 32, 3), 40))
    code, _, err = run_cli(restore_script, [photos, "--light_reach", "-0.5", "--weights", tiny_weights], capsys)
    assert code == 2 and "--light_reach" in err
    code, _, err = run_cli(restore_script, [photos, "--floor_radius", "2", "--weights", tiny_weights], capsys)
    assert code == 2 and "--floor_radius" in err
    code, _, err = run_cli(restore_script, [photos, "--lamp_edge", "-1", "--weights", tiny_weights], capsys)
    assert code == 2 and "--lamp_edge" in err


def test_lamp_edge_widens_the_lamp_kept_from_the_photo(tiny_weights):
    """--lamp_edge (0.4 of each core's diameter for photos): more of the photo is kept around its lamp than with
    test.py's 0.1, and nothing else changes."""
    rgb = night_rgb(64, 96, seed=5)
    rgb[20:36, 40:56] = 255  # a lamp 18 pixels across: edges of 4 (the least), 7 and 36 pixels
    kept = {edge: restore_image(rgb, tiny_weights, lamp_edge=edge, light_reach=0).astype(int) for edge in (0.1, 0.4, 2)}
    moved = [int((kept[edge] != rgb).any(axis=2).sum()) for edge in (0.1, 0.4, 2)]
    assert moved[0] > moved[1] > moved[2]  # a wider edge: fewer pixels changed, all of them beside the lamp
    far = distance_to(light_cores(rgb)) > 2 * 2 * np.sqrt(light_cores(rgb).sum() / np.pi)
    assert np.array_equal(kept[0.1][far], kept[2][far])


def test_every_photo_setting_reaches_the_restoration(tiny_weights, monkeypatch):
    """Each keyword of restore_image, and each PhotoSettings field test.py's options share, arrives in the
    options the restoration runs with: a setting dropped on the way would silently fall back to test.py's."""
    import utils.photo.api as api

    chosen = {"work_size": 64, "keep_lights": False, "lamp_edge": 0.7, "darken_only": False, "floor_radius": 0.2,
              "min_change": 9.0, "light_reach": 0.5}  # fmt: skip
    seen = {}
    monkeypatch.setattr(api, "restore_rgb", lambda rgb, models, opts, on_progress=None: seen.update(vars(opts)))
    restore_image(night_rgb(), tiny_weights, **chosen)
    assert {name: seen[name] for name in chosen} == chosen
    shared = set(vars(api.photo_options(api.PhotoSettings()))) & set(vars(api.PhotoSettings()))
    assert shared - {"device"} == set(chosen)  # no photo option left out of this test


def test_a_photo_without_lights_is_not_given_to_the_models():
    """With --light_reach every change would be dropped: the models are not even asked (none are given here)."""
    from utils.infer.options import InferenceOptions
    from utils.infer.restore import restore_rgb

    dark = np.full((16, 24, 3), 40, np.uint8)
    assert np.array_equal(restore_rgb(dark, [], InferenceOptions(light_reach=0.12)), dark)
    with pytest.raises(IndexError):
        restore_rgb(dark, [], InferenceOptions())  # without it the models are needed

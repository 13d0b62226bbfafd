"""The flare data set command (scripts.flare_data): layout, make_patch, determinism, masks, ownership, bad settings.

Every case uses a tiny PSF bank (3 PSFs on a 128 grid) and tiny images, so each takes a second or two.
"""

import hashlib

import cv2
import numpy as np
import pandas as pd
import pytest

import make_patch
from conftest import run_cli
from scripts import demo, flare_data, flare_eval
from utils.core.errors import UserError
from utils.flare.data_settings import FlareDataSettings

TINY = ["--psf_count", 3, "--psf_grid", 128, "--psf_size", 64]
TINY_BANK = {"psf_count": 3, "psf_grid": 128, "psf_size": 64}


def _digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))
    }


def _generate(root, *args, **kwargs):
    return flare_data.generate(FlareDataSettings(root, *args, progress=False, workers=1, **TINY_BANK, **kwargs))


def _run(root, capsys, *extra):
    args = ["--root", root, "--train_count", 4, "--test_count", 2, "--height", 96, "--width", 128, "--no_progress"]
    return run_cli(flare_data, [*args, *TINY, *extra], capsys)


def test_command_end_to_end(tmp_path, capsys):
    root = tmp_path / "data"
    code, out, err = _run(root, capsys, "--masks", "--seed", 3)
    assert code == 0, err
    assert "mean input PSNR" in out
    df = pd.read_csv(root / "train_original/train.csv")
    assert list(df.columns) == ["img_id", "input_img", "label_img"]
    assert df.img_id.tolist() == [10000, 10001, 10002, 10003]
    assert df.input_img.tolist() == [f"train_input_{10000 + i}.png" for i in range(4)]
    assert all((root / "train_original/train_label_img" / n).is_file() for n in df.label_img)
    assert sorted(p.name for p in (root / "test_input_img").glob("*.png")) == [
        "test_input_20000.png",
        "test_input_20001.png",
    ]
    assert sorted(p.name for p in (root / "test_label_img").glob("*.png")) == [
        "test_label_20000.png",
        "test_label_20001.png",
    ]
    assert len(list((root / "train_original/train_mask_img").glob("train_glare_1000*.png"))) == 4
    assert sorted(p.name for p in (root / "test_mask_img").glob("*.png")) == [
        "test_glare_20000.png", "test_glare_20001.png", "test_streak_20000.png", "test_streak_20001.png"]  # fmt: skip
    img = cv2.imread(str(root / "test_input_img/test_input_20000.png"))
    assert img.shape == (96, 128, 3)
    assert len(list((root / ".flare_cache").glob("psf_*.npz"))) == 1

    # deterministic for a seed, whatever the number of workers; another seed gives other images
    code, _, err = _run(tmp_path / "again", capsys, "--masks", "--seed", 3, "--workers", 1)
    assert code == 0, err
    assert _digest(root) == _digest(tmp_path / "again")
    assert _run(tmp_path / "other", capsys, "--seed", 4)[0] == 0
    other = _digest(tmp_path / "other")
    assert all(other[k] != v for k, v in _digest(root).items() if k in other)

    # make_patch accepts it
    src = root / "train_original"
    code, out, err = run_cli(make_patch, [
        "--folds", 2, "--img_size", 64, "--stride", 32, "--resize", 64, "--patch_growth_count", 1, "--v_threshold", 5,
        "--process_num", 1, "--no_progress", "--input_path", src / "train_input_img",
        "--target_path", src / "train_label_img", "--csv_path", src, "--save_path", root,
    ], capsys)  # fmt: skip
    assert code == 0, err
    assert int(out.split()[0]) > 0

    # a second run needs --overwrite; it replaces the set, its patches (not a user's folders) and old masks
    code, _, err = _run(root, capsys, "--seed", 3)
    assert code == 2 and "--overwrite" in err
    code, _, err = _run(root, capsys, "--seed", 3, "--overwrite")
    assert code == 0, err
    assert not (root / "test_mask_img").exists() and not any(p.is_file() for p in (root / "train").rglob("*"))
    assert not (root / "train_original/train_mask_img").exists()


def test_user_scenes_are_split_between_train_and_test(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(photos / f"p{i}.png"), rng.integers(0, 255, (80, 100, 3), dtype=np.uint8))
    (photos / "notes.png").write_bytes(b"not an image")
    info = flare_data.generate(
        FlareDataSettings(tmp_path / "data", 4, 2, 96, 128, progress=False, workers=1, scenes=photos, **TINY_BANK)
    )
    assert info["kinds"] == {"user": 6}
    assert info["sources"]["train"] and info["sources"]["test"]
    assert not set(info["sources"]["train"]) & set(info["sources"]["test"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--train_count", 1], "--train_count must be 2"),
        (["--test_count", 0], "--test_count must be 1 to 10000 (got 0)"),
        (["--height", 32], "--height must be 64 to 8192"),
        (["--width", 100000], "--width must be 64 to 8192"),
        (["--workers", 0], "--workers must be 1 to"),
        (["--psf_grid", 100], "--psf_grid must be a power of two"),
        (["--psf_size", 512], "--psf_size must be 16"),
        (["--clean_share", 1], "--clean_share must be from 0 to below 1"),
        (["--clean_share", 0.9, "--train_count", 10], "leaves 1 of 10 training pairs with flare"),
        (["--clean_share", 0.2], "makes none without flare"),
    ],
)
def test_bad_settings_are_one_sentence_and_write_nothing(tmp_path, capsys, extra, message):
    code, _, err = _run(tmp_path / "data", capsys, *extra)
    assert code == 2 and message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "data").exists()


def test_bad_scenes_and_overlaps_write_nothing(tmp_path, capsys):
    root = tmp_path / "data"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.jpg").write_bytes(b"not a jpeg")
    code, _, err = _run(root, capsys, "--scenes", empty)
    assert code == 2 and "holds no readable image" in err and not root.exists()
    code, _, err = _run(root, capsys, "--scenes", tmp_path / "missing")
    assert code == 2 and "is not a folder" in err and not root.exists()
    inside = root / "train_original" / "train_label_img"  # the user's photos where the output would go
    inside.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(inside / f"{i}.png"), np.full((70, 90, 3), 60, np.uint8))
    code, _, err = _run(root, capsys, "--scenes", inside)
    assert code == 2 and "overlaps the scenes folder" in err
    assert sorted(p.name for p in root.rglob("*")) == ["0.png", "1.png", "train_label_img", "train_original"]


def test_refuses_existing_data_without_overwrite(tmp_path):
    _generate(tmp_path, 2, 1, 96, 128)
    with pytest.raises(UserError, match="already holds results; pass --overwrite"):
        _generate(tmp_path, 2, 1, 96, 128)
    _generate(tmp_path, 3, 1, 96, 128, overwrite=True)
    assert len(list((tmp_path / "train_original/train_input_img").iterdir())) == 3


def test_the_demo_checks_the_test_masks_too(tmp_path):
    """A user's file in the masks folder stops the demo before its first step, as one in the other folders does."""
    _generate(tmp_path / "data", 2, 1, 96, 128, masks=True)
    demo.check_ownership(tmp_path / "data", tmp_path / "weights")
    (tmp_path / "data" / "test_mask_img" / "mine.png").write_bytes(b"a user's mask")
    with pytest.raises(UserError, match="'mine.png', which this project did not write"):
        demo.check_ownership(tmp_path / "data", tmp_path / "weights")


def test_flare_eval_draws_the_lights_of_a_pair_again(tmp_path, capsys):
    """scripts.flare_eval's region far from the lights: the lights come back from the seed, or it stops."""
    _generate(tmp_path, 2, 1, 96, 128)
    label = tmp_path / "test_label_img" / "test_label_20000.png"
    far = flare_eval.far_from_lights(label, 0, 10)
    assert far.shape == (96, 128) and far.mean() < 1
    with pytest.raises(UserError, match="with --seed 1"):
        flare_eval.far_from_lights(label, 1, 10)
    flare_eval.report_far(tmp_path, tmp_path / "no submission", 1, 10)  # lights not drawn again: (c) is skipped
    assert "(c) skipped: " in capsys.readouterr().out
    with pytest.raises(UserError, match="test_20000.png does not exist"):  # any other mistake still stops
        flare_eval.report_far(tmp_path, tmp_path / "no submission", 0, 10)


def test_flare_eval_scores_lamps_on_the_targets_cores(tmp_path):
    """(d): a restoration equal to the target keeps its lamps whole, though it removes the glow the flare clipped."""
    for folder in ("test_input_img", "test_label_img", "submission"):
        (tmp_path / folder).mkdir()
    image = np.full((32, 32, 3), 30, np.uint8)
    image[8:24, 8:24] = 255  # the lamp and the glow around it, clipped
    target = np.full((32, 32, 3), 30, np.uint8)
    target[12:20, 12:20] = 255  # the lamp alone
    cv2.imwrite(str(tmp_path / "test_input_img" / "test_input_20000.png"), image)
    cv2.imwrite(str(tmp_path / "test_label_img" / "test_label_20000.png"), target)
    cv2.imwrite(str(tmp_path / "submission" / "test_20000.png"), target)
    lamps, restored_cores, target_cores = flare_eval.lamp_ratios(tmp_path, tmp_path / "submission")
    assert lamps == 1.0 and restored_cores == target_cores < 0.5
    (tmp_path / "empty" / "test_input_img").mkdir(parents=True)
    assert np.isnan(flare_eval.lamp_ratios(tmp_path / "empty", tmp_path)).all()  # no test images: no score


def test_flare_eval_restores_the_clean_targets_with_the_submissions_photo_options():
    assert flare_eval.photo_flags(flare_eval.parse_args([])) == []
    args = flare_eval.parse_args(["--darken_only", "--min_change", "4", "--keep_lights", "--light_reach", "0.12"])
    exact = flare_eval.parse_args(["--light_reach", "0.1234567"])
    assert flare_eval.photo_flags(exact) == ["--light_reach", "0.1234567"]  # the submission's value, not rounded
    edges = [flare_eval.photo_flags(flare_eval.parse_args(["--lamp_edge", edge])) for edge in ("0.1", "0.4")]
    assert edges == [[], ["--lamp_edge", "0.4"]]  # test.py's own default is not repeated
    assert flare_eval.photo_flags(args) == [
        "--keep_lights", "--darken_only", "--min_change", "4.0", "--light_reach", "0.12"
    ]  # fmt: skip


def test_flare_eval_scores_only_the_pixels_far_from_all_flare(tmp_path, capsys):
    """(e): a change near the flare does not count, a change of one level far from it does."""
    for folder in ("test_input_img", "test_label_img", "submission"):
        (tmp_path / folder).mkdir()
    target = np.random.default_rng(0).integers(0, 200, (48, 96, 3), dtype=np.uint8)
    image = target.copy()
    image[:, :10] += 40  # the flare, on the left
    cv2.imwrite(str(tmp_path / "test_input_img" / "test_input_20000.png"), image)
    cv2.imwrite(str(tmp_path / "test_label_img" / "test_label_20000.png"), target)
    restored = image.copy()
    restored[:, 10:40] += 5  # within 30 px of the flare
    cv2.imwrite(str(tmp_path / "submission" / "test_20000.png"), restored)
    before, after = flare_eval.untouched_psnr(tmp_path, tmp_path / "submission", 30)
    assert before == after > 100  # the far pixels are the target's in both
    restored[:, 60:] += 1  # far from it: one level off over 36 of the 56 far columns
    cv2.imwrite(str(tmp_path / "submission" / "test_20000.png"), restored)
    assert flare_eval.untouched_psnr(tmp_path, tmp_path / "submission", 30)[1] == pytest.approx(
        10 * np.log10(255**2 * 56 / 36)
    )
    flare_eval.report_untouched(tmp_path, tmp_path / "submission", 90)  # nothing that far: said, not failed
    assert "(e) skipped: no pixel lies more than 90 px from the flare" in capsys.readouterr().out

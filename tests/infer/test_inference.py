import csv
import shutil
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import FIXTURES, load_script, run_cli, tiny_model
from utils.core.tiling import Tiling, restore_image
from utils.data.images import read_mask, read_rgb, to_uint8
from utils.infer.inputs import submission_name
from utils.infer.restorer import Restorer
from utils.metrics import psnr_uint8

test_script = load_script("test")
REF = FIXTURES / "inference_reference"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working folder laid out as the original expects: weights/ and data/test_input_img/."""
    (tmp_path / "weights").mkdir()
    for name in ("256_best.pth", "352_best.pth"):
        shutil.copy(REF / name, tmp_path / "weights" / name)
    shutil.copytree(REF / "test_input_img", tmp_path / "data" / "test_input_img")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_reproduce_original_submission(workdir, capsys):
    code, out, err = run_cli(test_script, ["--no_progress"], capsys)
    assert code == 0, err
    sub = workdir / "results" / "submission"
    for expected in sorted((REF / "expected_submission").glob("*.png")):
        got = cv2.imread(str(sub / expected.name)).astype(int)
        ref = cv2.imread(str(expected)).astype(int)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1
    with zipfile.ZipFile(sub / "submission.zip") as zf:
        assert sorted(zf.namelist()) == ["test_20000.png", "test_20001.png"]
    assert "2 images restored" in out


def _save_tiny(path: Path, seed: int) -> None:
    model = tiny_model(seed=seed)
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict()}, path)


def _image(path: Path, h: int, w: int, seed: int, flag=None) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img if flag is None else flag(img))
    return img


def test_mixed_sizes_single_checkpoint_each_mode(tmp_path, capsys):
    _save_tiny(tmp_path / "m.pth", 0)
    inp = tmp_path / "in"
    inp.mkdir()
    sizes = {"a.png": (40, 72), "b.png": (97, 50), "c.png": (20, 20)}  # the last is smaller than a tile
    for i, (name, (h, w)) in enumerate(sizes.items()):
        _image(inp / name, h, w, i)
    restorer = Restorer(tiny_model(seed=0), torch.device("cpu"))  # the weights saved in m.pth
    for mode in ("stride_aware", "all", "shift"):
        out = tmp_path / f"out_{mode}"
        args = ["--weights", tmp_path / "m.pth", "--tile_sizes", 32, "--strides", 16, "--batch_sizes", 3]
        code, _, err = run_cli(
            test_script, [*args, "--input_dir", inp, "--output_dir", out, "--tile_mode", mode, "--no_progress"], capsys
        )
        assert code == 0, err
        for name, (h, w) in sizes.items():
            got = read_rgb(out / name)
            assert got.shape == (h, w, 3)
            image = torch.from_numpy(read_rgb(inp / name)).permute(2, 0, 1).float() / 255
            assert np.array_equal(got, to_uint8(restore_image(restorer, image, Tiling(32, 16, 3, mode))))


def test_tta_and_ensemble_weights(tmp_path, capsys):
    _save_tiny(tmp_path / "a.pth", 1)
    _save_tiny(tmp_path / "b.pth", 2)
    inp = tmp_path / "in"
    inp.mkdir()
    _image(inp / "test_input_7.png", 48, 64, 0)
    common = ["--input_dir", inp, "--tile_sizes", 32, 32, "--strides", 16, 16, "--no_progress", "--no_zip"]
    runs = {}
    for tag, extra in {"tta": ["--tta"], "plain": [], "weighted": ["--ensemble_weights", 1, 3]}.items():
        out = tmp_path / tag
        code, _, err = run_cli(
            test_script,
            ["--weights", tmp_path / "a.pth", tmp_path / "b.pth", *common, "--output_dir", out, *extra],
            capsys,
        )
        assert code == 0, err
        assert not (out / "submission.zip").exists()
        runs[tag] = read_rgb(out / "test_7.png").astype(int)
    image = torch.from_numpy(read_rgb(inp / "test_input_7.png")).permute(2, 0, 1).float() / 255
    expected = torch.zeros_like(image)
    for seed, share in ((1, 0.25), (2, 0.75)):  # weights 1 and 3, normalised
        expected += share * restore_image(
            Restorer(tiny_model(seed=seed), torch.device("cpu")), image, Tiling(32, 16, 16)
        )
    assert np.array_equal(runs["weighted"], to_uint8(expected).astype(int))
    assert np.abs(runs["tta"] - runs["plain"]).max() > 0


def test_eval_dir_reports_psnr(tmp_path, capsys):
    _save_tiny(tmp_path / "m.pth", 0)
    inp, clean = tmp_path / "in", tmp_path / "clean"
    inp.mkdir()
    clean.mkdir()
    noisy = _image(inp / "test_input_1.png", 40, 40, 3)
    target = np.clip(noisy.astype(int) + 10, 0, 255).astype(np.uint8)
    cv2.imwrite(str(clean / "test_label_1.png"), target)
    args = [
        "--weights",
        tmp_path / "m.pth",
        "--tile_sizes",
        32,
        "--input_dir",
        inp,
        "--eval_dir",
        clean,
        "--output_dir",
        tmp_path / "o",
    ]
    code, out, err = run_cli(test_script, [*args, "--no_progress"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "o" / "metrics.csv").read_text().splitlines()))
    assert rows[0]["image"] == "test_input_1.png" and rows[-1]["image"] == "mean"
    expected_input = psnr_uint8(cv2.cvtColor(noisy, cv2.COLOR_BGR2RGB), cv2.cvtColor(target, cv2.COLOR_BGR2RGB))
    assert float(rows[0]["psnr_input"]) == pytest.approx(expected_input)
    restored = read_rgb(tmp_path / "o" / "test_1.png")
    assert float(rows[0]["psnr_ensemble"]) == pytest.approx(
        psnr_uint8(restored, cv2.cvtColor(target, cv2.COLOR_BGR2RGB))
    )
    assert "mean PSNR (dB): input" in out


def test_eval_dir_scores_the_glare_and_streak_regions_where_masks_lie_beside_the_labels(tmp_path, capsys):
    """The layout scripts.flare_data --masks writes: G-PSNR is the PSNR over the glare mask's pixels only."""
    _save_tiny(tmp_path / "m.pth", 0)
    inp, clean, masks = tmp_path / "in", tmp_path / "test_label_img", tmp_path / "test_mask_img"
    for folder in (inp, clean, masks):
        folder.mkdir()
    noisy = {i: cv2.cvtColor(_image(inp / f"test_input_{i}.png", 40, 48, i), cv2.COLOR_BGR2RGB) for i in (1, 2)}
    target = {}
    for i, img in noisy.items():
        target[i] = img.copy()
        target[i][5:15, 10:30] = np.clip(img[5:15, 10:30].astype(int) - 20 * i, 0, 255)  # the flare: only there
        cv2.imwrite(str(clean / f"test_label_{i}.png"), cv2.cvtColor(target[i], cv2.COLOR_RGB2BGR))
    glare = np.zeros((40, 48), np.uint8)
    glare[3:17, 8:32] = 255
    cv2.imwrite(str(masks / "test_glare_1.png"), glare)  # image 1 has a glare mask and no streak mask; 2 has none
    args = ["--weights", tmp_path / "m.pth", "--tile_sizes", 32, "--input_dir", inp, "--eval_dir", clean,
            "--output_dir", tmp_path / "o", "--no_progress"]  # fmt: skip
    code, _, err = run_cli(test_script, args, capsys)
    assert code == 0, err
    rows = {r["image"]: r for r in csv.DictReader((tmp_path / "o" / "metrics.csv").read_text().splitlines())}
    one, two, mean = rows["test_input_1.png"], rows["test_input_2.png"], rows["mean"]
    inside = glare > 0
    diff = noisy[1][inside].astype(float) - target[1][inside]
    assert float(one["gpsnr_input"]) == pytest.approx(10 * np.log10(255**2 / np.mean(diff**2)))
    restored = read_rgb(tmp_path / "o" / "test_1.png")
    direct = 10 * np.log10(255**2 / np.mean((restored[inside].astype(float) - target[1][inside]) ** 2))
    assert float(one["gpsnr_ensemble"]) == pytest.approx(direct)
    assert float(one["gpsnr_32"]) == pytest.approx(direct)  # one model: its own score is the ensemble's
    assert float(one["gpsnr_input"]) < float(one["psnr_input"])  # the whole image counts the unflared pixels too
    assert one["spsnr_input"] == one["spsnr_ensemble"] == ""
    assert two["gpsnr_input"] == two["spsnr_input"] == ""
    assert float(mean["gpsnr_input"]) == pytest.approx(float(one["gpsnr_input"]))  # the mean skips image 2
    assert mean["spsnr_input"] == "nan"
    cv2.imwrite(str(masks / "test_streak_2.png"), np.zeros((20, 20), np.uint8))
    code, _, err = run_cli(test_script, [*args, "--overwrite"], capsys)
    assert code == 2 and "test_streak_2.png is 20x20 but the input test_input_2.png is 48x40" in err


def test_odd_formats_are_converted(tmp_path, capsys):
    _save_tiny(tmp_path / "m.pth", 0)
    inp = tmp_path / "in"
    inp.mkdir()
    _image(inp / "grey.png", 30, 30, 0, lambda im: im[..., 0])
    _image(inp / "alpha.png", 30, 30, 1, lambda im: np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]))
    _image(inp / "deep.png", 30, 30, 2, lambda im: im.astype(np.uint16) * 257)
    with pytest.warns(UserWarning) as caught:
        code, _, err = run_cli(
            test_script,
            [
                "--weights",
                tmp_path / "m.pth",
                "--tile_sizes",
                32,
                "--input_dir",
                inp,
                "--output_dir",
                tmp_path / "o",
                "--no_progress",
            ],
            capsys,
        )
    notes = " ".join(str(w.message) for w in caught)
    assert "grey-scale to colour" in notes and "alpha channel dropped" in notes and "16-bit to 8-bit" in notes
    assert code == 0, err
    assert all(
        cv2.imread(str(tmp_path / "o" / n), cv2.IMREAD_UNCHANGED).shape == (30, 30, 3)
        for n in ("grey.png", "alpha.png", "deep.png")
    )


def test_masks_read_as_grey_without_a_warning(tmp_path):
    grey = np.arange(30 * 40, dtype=np.uint8).reshape(30, 40)
    cv2.imwrite(str(tmp_path / "glare.png"), grey)
    cv2.imwrite(str(tmp_path / "colour.png"), np.dstack([grey] * 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a grey mask is what masks are: no conversion note
        assert np.array_equal(read_mask(tmp_path / "glare.png"), grey)
    assert np.array_equal(read_mask(tmp_path / "colour.png"), grey)  # a mask saved in colour reads the same


def test_submission_names():
    assert submission_name("test_input_20000.png") == "test_20000.png"
    assert submission_name("night_street.jpg") == "night_street.png"


BAD = {
    "missing checkpoint": (["--weights", "weights/nope.pth", "--tile_sizes", 32], r"checkpoint weights/nope\.pth does not exist \(looked for /.*weights/nope\.pth\); train one with main\.py.* the shipped starter model: --weights /.*pretrained/hinet_flare_starter\.pth"),
    "folder as checkpoint": (["--weights", "weights", "--tile_sizes", 32], r"--weights weights is a folder; give checkpoint files"),
    "missing input folder": (["--input_dir", "nowhere"], r"input folder nowhere does not exist"),
    "a photo as input folder": (["--input_dir", "broken/bad.png"], r"--input_dir broken/bad\.png is a file, not a folder; .* restore\.py broken/bad\.png"),
    "empty input folder": (["--input_dir", "empty"], r"input folder empty holds no images"),
    "unreadable image": (["--input_dir", "broken"], r"bad\.png cannot be decoded as an image"),
    "list lengths": (["--strides", 64], r"--strides has 1 values for 2 checkpoint"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(workdir, capsys, case):
    (workdir / "empty").mkdir()
    (workdir / "broken").mkdir()
    (workdir / "broken" / "bad.png").write_bytes(b"garbage")
    argv, message = BAD[case]
    code, _, err = run_cli(test_script, [*argv, "--no_progress"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert pytest.importorskip("re").search(message, err), err
    assert not (workdir / "results").exists()


def test_existing_output_and_failed_run_leave_no_trace(workdir, capsys):
    assert run_cli(test_script, ["--no_progress"], capsys)[0] == 0
    sub = workdir / "results" / "submission"
    before = {p.name: p.read_bytes() for p in sub.iterdir()}
    code, _, err = run_cli(test_script, ["--no_progress"], capsys)
    assert code == 2 and "--overwrite" in err
    # a valid header on truncated data passes the up-front check and fails mid-run
    bad = workdir / "data" / "test_input_img" / "test_input_20001.png"
    bad.write_bytes(bad.read_bytes()[:300])
    code, _, err = run_cli(test_script, ["--no_progress", "--overwrite"], capsys)
    assert code == 2 and "test_input_20001.png" in err
    assert {p.name: p.read_bytes() for p in sub.iterdir()} == before  # the earlier submission is intact
    assert [p.name for p in (workdir / "results").iterdir()] == ["submission"]


DESTRUCTIVE = {
    "the input folder": (["--output_dir", "data/test_input_img"], "overlaps the input folder"),
    "the data folder": (["--output_dir", "data"], "overlaps the input folder"),
    "the parent folder": (["--output_dir", ".."], "current working folder"),
    "the working folder": (["--output_dir", "."], "current working folder"),
    "the labels": (["--output_dir", "data/test_label_img", "--eval_dir", "data/test_label_img"], "overlaps the --eval_dir folder"),
    "the weights": (["--output_dir", "weights"], r"overlaps the checkpoint weights/256_best\.pth"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(DESTRUCTIVE))
def test_overwrite_never_destroys_inputs_labels_or_checkpoints(workdir, capsys, case):
    labels = workdir / "data" / "test_label_img"
    shutil.copytree(workdir / "data" / "test_input_img", labels)
    for p in labels.iterdir():
        p.rename(p.with_name(p.name.replace("input", "label")))
    (workdir / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(workdir.parent)) for p in workdir.parent.rglob("*"))
    argv, message = DESTRUCTIVE[case]
    code, _, err = run_cli(test_script, [*argv, "--overwrite", "--no_progress"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert pytest.importorskip("re").search(message, err), err
    assert sorted(str(p.relative_to(workdir.parent)) for p in workdir.parent.rglob("*")) == before


def test_overwrite_replaces_only_a_folder_of_its_own_outputs(workdir, capsys):
    assert run_cli(test_script, ["--no_progress"], capsys)[0] == 0
    first = (workdir / "results" / "submission" / "submission.zip").stat().st_ino
    assert run_cli(test_script, ["--no_progress", "--overwrite"], capsys)[0] == 0  # (a user's file: the contract)
    assert (workdir / "results" / "submission" / "submission.zip").stat().st_ino != first


def _absurd_checkpoint(path: Path) -> None:
    model = tiny_model()
    torch.save({"state_dict": model.state_dict(), "model_config": {**model.config.to_dict(), "wf": 200000}}, path)


WRONG = {
    "stride larger than the tile": (["--strides", 300, 96], r"stride 300 is larger than the tile 256 .* leave pixels unrestored"),
    "device meta": (["--device", "meta"], r"--device 'meta' is not supported"),
    "output folder is a file": (["--output_dir", "weights/256_best.pth"], r"is a file, not a folder"),
    "negative ensemble weight": (["--ensemble_weights", -1, 2], r"--ensemble_weights must be finite and positive"),
    "checkpoint asking for an absurd model": (["--weights", "weights/absurd.pth", "--tile_sizes", 32], r"absurd\.pth states an architecture its weights do not have: wf 200000 \(tensors: 4\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(WRONG))
def test_results_that_cannot_be_right_are_refused_up_front(workdir, capsys, case):
    _absurd_checkpoint(workdir / "weights" / "absurd.pth")
    argv, message = WRONG[case]
    code, _, err = run_cli(test_script, [*argv, "--no_progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert pytest.importorskip("re").search(message, err), err
    assert not (workdir / "results").exists()


def test_uncovered_pixels_are_impossible():
    with pytest.raises(ValueError, match="leave pixels uncovered"):
        restore_image(lambda b: b, torch.rand(3, 40, 40), Tiling(16, 20, 4, "all"))


def test_inputs_and_labels_are_checked_before_the_first_image(tmp_path, capsys):
    _save_tiny(tmp_path / "m.pth", 0)
    inp, labels = tmp_path / "in", tmp_path / "labels"
    inp.mkdir()
    labels.mkdir()
    _image(inp / "a.png", 40, 40, 0)
    _image(labels / "a.png", 40, 48, 0)
    base = ["--weights", tmp_path / "m.pth", "--tile_sizes", 32, "--input_dir", inp, "--no_progress"]
    code, _, err = run_cli(test_script, [*base, "--output_dir", tmp_path / "o", "--eval_dir", labels], capsys)
    assert code == 2 and "clean image a.png is 48x40 but the input a.png is 40x40" in err
    _image(inp / "a.jpg", 40, 40, 1)
    code, _, err = run_cli(test_script, [*base, "--output_dir", tmp_path / "o"], capsys)
    assert code == 2 and "a.jpg and a.png would both be written as a.png" in err
    (inp / "a.jpg").unlink()
    cv2.imwrite(str(inp / "b.tif"), np.zeros((40, 40, 3), np.float32))
    code, _, err = run_cli(test_script, [*base, "--output_dir", tmp_path / "o"], capsys)
    assert code == 2 and "b.tif has pixel type float32" in err
    assert not (tmp_path / "o").exists()


def test_a_full_disk_while_zipping_keeps_the_earlier_submission(workdir, capsys, monkeypatch):
    assert run_cli(test_script, ["--no_progress"], capsys)[0] == 0
    sub = workdir / "results" / "submission"
    before = {p.name: p.read_bytes() for p in sub.iterdir()}

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile.ZipFile, "writestr", full_disk)
    code, _, err = run_cli(test_script, ["--no_progress", "--overwrite"], capsys)
    assert code == 2 and err.count("\n") == 1 and "could not write submission.zip (No space left on device)" in err
    assert {p.name: p.read_bytes() for p in sub.iterdir()} == before
    assert [p.name for p in (workdir / "results").iterdir()] == ["submission"]


def test_tile_size_comes_from_the_checkpoint(tmp_path, capsys):
    model = tiny_model(seed=2)
    torch.save(
        {"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 32}, tmp_path / "m.pth"
    )
    torch.save({"state_dict": model.state_dict()}, tmp_path / "bare.pth")  # the original's files store no size
    inp = tmp_path / "in"
    inp.mkdir()
    _image(inp / "a.png", 50, 70, 0)
    base = ["--input_dir", inp, "--no_progress"]
    code, _, err = run_cli(
        test_script, ["--weights", tmp_path / "m.pth", "--output_dir", tmp_path / "o", *base], capsys
    )
    assert code == 0, err
    image = torch.from_numpy(read_rgb(inp / "a.png")).permute(2, 0, 1).float() / 255
    expected = to_uint8(restore_image(Restorer(tiny_model(seed=2), torch.device("cpu")), image, Tiling(32, 8, 16)))
    assert np.array_equal(read_rgb(tmp_path / "o" / "a.png"), expected)  # tile 32, stride 32 // 4
    code, _, err = run_cli(
        test_script, ["--weights", tmp_path / "bare.pth", "--output_dir", tmp_path / "p", *base], capsys
    )
    assert code == 2 and "--tile_sizes is needed" in err and "bare.pth" in err

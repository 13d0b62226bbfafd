"""Files that are not what their names or folders say: images judged by content, checkpoints that mix or
truncate weights, labels and held-out images that are copies, and benchmark flags out of range."""

import re
import shutil
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import main as train_script
import make_patch
from conftest import load_script, run_cli, tiny_model
from models.checkpoint import load_model
from utils.core.errors import UserError
from utils.data.images import header_size, inspect_image, read_bgr, read_rgb
from utils.data.patch_settings import check_inputs
from utils.data.patches import PatchSettings

test_script = load_script("test")


def _refused(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert re.search(pattern, err), err


# --- images: orientation and size by content, never by name -------------------------------------------------------


def _exif_after_pixels(data: bytes) -> bytes:
    """The same PNG with its eXIf chunk moved after the image data (just before IEND), as the format allows."""
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunks.append((kind, data[pos : pos + 12 + length]))
        pos += 12 + length
    exif = [c for k, c in chunks if k == b"eXIf"]
    rest = [c for k, c in chunks if k not in (b"eXIf", b"IEND")]
    assert len(exif) == 1
    return data[:8] + b"".join(rest) + exif[0] + chunks[-1][1]


ENCODED = {
    "png with eXIf": ("PNG", lambda data: data),
    "png with eXIf after the pixels": ("PNG", _exif_after_pixels),
    "jpeg named .png": ("JPEG", lambda data: data),
    "tiff named .png": ("TIFF", lambda data: data),
}


@pytest.mark.parametrize("case", list(ENCODED))
def test_orientation_is_read_from_the_content(tmp_path, case):
    fmt, edit = ENCODED[case]
    pixels = np.kron(np.random.default_rng(6).integers(0, 256, (3, 5, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    image = Image.fromarray(pixels)  # stored 24x40; orientation 6 shows it 40x24
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "photo.png"
    image.save(path, format=fmt, exif=exif.tobytes(), **({"quality": 100} if fmt == "JPEG" else {}))
    path.write_bytes(edit(path.read_bytes()))
    with Image.open(path) as im:  # what Pillow shows: the stored pixels turned a quarter clockwise
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert fmt == "JPEG" or np.array_equal(expected, np.rot90(pixels, -1))
    got = read_rgb(path)
    assert got.shape == (40, 24, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= (2 if fmt == "JPEG" else 0)  # two JPEG decoders
    assert inspect_image(path) == ((40, 24), None)


def _bigtiff(path: Path, order: str, width: int, height: int) -> None:
    """A BigTIFF header and first directory declaring ``width`` x ``height`` (LONG and LONG8 entries), no pixels."""
    magic = b"II+\x00" if order == "<" else b"MM\x00+"
    value = {4: lambda v: struct.pack(order + "I", v) + bytes(4), 16: lambda v: struct.pack(order + "Q", v)}
    entries = [(256, 4, width), (257, 16, height), (258, 3, 8)]
    body = struct.pack(order + "HHQ", 8, 0, 16) + struct.pack(order + "Q", len(entries))
    for tag, kind, v in entries:
        raw = value[kind](v) if kind in value else struct.pack(order + "H", v) + bytes(6)
        body += struct.pack(order + "HHQ", tag, kind, 1) + raw
    path.write_bytes(magic + body + bytes(8))


def test_bigtiff_is_sized_from_its_header(tmp_path, monkeypatch):
    pixels = np.random.default_rng(1).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "small.tif", big_tiff=True)
    assert (tmp_path / "small.tif").read_bytes()[:4] == b"II+\x00"
    assert header_size(tmp_path / "small.tif") == (24, 40)
    assert np.array_equal(read_rgb(tmp_path / "small.tif"), pixels)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a bomb was decoded")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    for order in "<>":
        bomb = tmp_path / f"bomb{order == '>'}.tif"
        _bigtiff(bomb, order, 17000, 17000)
        assert header_size(bomb) == (17000, 17000)
        with pytest.raises(UserError, match=r"declares 17000x17000 pixels, more than the limit of 268,435,456"):
            read_bgr(bomb)
        assert "decompression bomb" in inspect_image(bomb)[1]


def test_an_image_of_unknown_size_is_not_decoded(tmp_path, monkeypatch):
    """A format whose header is not read (here a GIF named .png) could declare anything: refused, not decoded."""
    path = tmp_path / "odd.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(path, format="GIF")

    def no_decoding(*args, **kwargs):
        raise AssertionError("a file of unknown size was decoded")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    with pytest.raises(UserError, match=r"odd\.png cannot be decoded as an image: it is not a PNG, JPEG, BMP or TIFF"):
        read_bgr(path)
    size, problem = inspect_image(path)
    assert size is None and "cannot be decoded as an image: it is not a PNG, JPEG, BMP or TIFF file" in problem


# --- checkpoints ------------------------------------------------------------------------------------------------


def test_two_tensors_for_one_parameter_are_refused(tmp_path, capsys):
    state = tiny_model().state_dict()
    path = tmp_path / "mixed.pth"
    torch.save({"params": state | {"module.conv_01.weight": torch.full_like(state["conv_01.weight"], 1e3)}}, path)
    with pytest.raises(UserError, match=r"mixed\.pth holds two tensors for the parameter 'conv_01\.weight'"):
        load_model(path)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((16, 16, 3), np.uint8))
    argv = ["--weights", path, "--tile_sizes", 16, "--input_dir", tmp_path / "in", "--output_dir", tmp_path / "out"]
    code, _, err = run_cli(test_script, argv, capsys)
    _refused(code, err, r"two tensors for the parameter 'conv_01\.weight'")
    assert not (tmp_path / "out").exists()


def test_whole_number_weights_are_refused(tmp_path):
    model = tiny_model()
    state = {k: (v * 100).to(torch.int64) for k, v in model.state_dict().items()}
    path = tmp_path / "ints.pth"
    torch.save({"state_dict": state, "model_config": model.config.to_dict(), "img_size": 16}, path)
    with pytest.raises(UserError, match=r"ints\.pth stores the parameter 'conv_01\.weight' as int64, not as floating"):
        load_model(path)
    state = model.state_dict() | {"last.bias": model.state_dict()["last.bias"].bool()}  # one tensor is enough
    torch.save({"params": state}, path)
    with pytest.raises(UserError, match=r"stores the parameter 'last\.bias' as bool"):
        load_model(path)


# --- labels that are copies of the inputs -----------------------------------------------------------------------


def _copy_inputs_over_labels(src: Path, count: int | None = None) -> None:
    for path in sorted((src / "train_input_img").iterdir())[:count]:
        shutil.copy(path, src / "train_label_img" / path.name.replace("input", "label"))


def test_make_patch_refuses_labels_that_are_all_the_inputs(train_original, capsys):
    _copy_inputs_over_labels(train_original)
    save = train_original.parent
    argv = ["--folds", 3, "--process_num", 1, "--no_progress", "--input_path", train_original / "train_input_img",
            "--target_path", train_original / "train_label_img", "--csv_path", train_original, "--save_path", save]  # fmt: skip
    code, _, err = run_cli(make_patch, argv, capsys)
    _refused(code, err, r"every label image listed in .*train\.csv is identical to its input .* --target_path")
    assert not (save / "train").exists() and not (train_original / "train_10fold.csv").exists()


def test_a_few_flare_free_pairs_are_accepted(train_original):
    _copy_inputs_over_labels(train_original, 2)
    src = train_original
    df, pairs = check_inputs(PatchSettings(folds=3), src / "train_input_img", src / "train_label_img", src)
    assert len(df) == 5 and pairs


def test_main_refuses_patches_whose_targets_are_all_the_inputs(patch_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(patch_data, data)
    patches = data / "train/10Folds/0/resize256"
    for path in (patches / "input").iterdir():
        shutil.copy(path, patches / "target" / path.name.replace("input", "label"))
    argv = ["--data_path", data, "--model_path", tmp_path / "runs", "--img_size", 256, "--wf", 4, "--depth", 3,
            "--epochs", 1, "--batch_size", 2, "--num_workers", 0, "--pretrained_path", "none", "--no_progress"]  # fmt: skip
    code, _, err = run_cli(train_script, argv, capsys)
    _refused(code, err, r"every target patch in .* is identical to its input patch .* python make_patch\.py")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.pth"))


# --- held-out images that are copies of the test images ---------------------------------------------------------


def _write(path: Path, seed: int, blur: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (16, 20, 3), dtype=np.uint8)
    cv2.imwrite(str(path), cv2.GaussianBlur(img, (5, 5), 2) if blur else img)


@pytest.mark.parametrize("name", ["test_input_1.png", "train_input_7.png"])
def test_fit_images_that_are_copies_of_the_test_images_are_refused(tmp_path, capsys, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "in" / "test_input_1.png", 1)
    _write(tmp_path / "fit" / "train_input_3.png", 3)  # a genuine held-out image beside the copy
    shutil.copy(tmp_path / "in" / "test_input_1.png", tmp_path / "fit" / name)
    for path in (tmp_path / "fit").iterdir():
        _write(tmp_path / "lab" / path.name.replace("input", "label"), 1 if "1" in path.name else 3, blur=True)
    for seed in (1, 2):
        model = tiny_model(seed=seed)
        torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 16},
                   tmp_path / f"m{seed}.pth")  # fmt: skip
    argv = ["--weights", "m1.pth", "m2.pth", "--input_dir", "in", "--output_dir", "out", "--no_progress",
            "--fit_weights", "--fit_input_dir", "fit", "--fit_label_dir", "lab"]  # fmt: skip
    code, _, err = run_cli(test_script, argv, capsys)
    _refused(code, err, rf"must not fit on the test images: fit/{name} holds the same bytes as the test image "
                        rf"in/test_input_1\.png")  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_find_copy_compares_contents_not_sizes(tmp_path):
    from utils.data.copies import find_copy

    (tmp_path / "a").write_bytes(b"abcd")
    (tmp_path / "b").write_bytes(b"abce")  # the same size, other bytes
    (tmp_path / "c").write_bytes(b"abcd")
    assert find_copy([tmp_path / "b"], [tmp_path / "a"]) is None
    assert find_copy([tmp_path / "b", tmp_path / "c"], [tmp_path / "a"]) == (tmp_path / "c", tmp_path / "a")


# --- benchmark flags ------------------------------------------------------------------------------------------


BENCH = {
    "deploy, no image folder": ("bench_deploy", ["--images", "0"], r"--images 0 is not a folder"),
    "deploy, negative tiles": ("bench_deploy", ["--images", "1", "--tiles", "-3"], r"--tiles -3 is not from 1 to 64"),
    "make_patch, size and workers": ("bench_make_patch", ["--images", "1", "--size", "10", "--workers", "0"], r"--workers 0 is not from 1"),
    "make_patch, size": ("bench_make_patch", ["--size", "10"], r"--size '10' is not HEIGHTxWIDTH"),
    "make_patch, small size": ("bench_make_patch", ["--size", "100x100"], r"--size 100x100 has a side outside 512 to"),
    "make_patch, rounds": ("bench_make_patch", ["--rounds", "0"], r"--rounds 0 is not from 1"),
    "train, zero width": ("bench_train", ["--wf", "0"], r"--wf 0 is not from 1 to 64"),
    "train, deep": ("bench_train", ["--wf", "4", "--depth", "99", "--steps", "1"], r"--depth 99 is not from 1 to 9"),
    "train, negative batch": ("bench_train", ["--batch", "-1"], r"--batch -1 is not from 1 to 64"),
    "train, no steps": ("bench_train", ["--steps", "0"], r"--steps 0 is not from 1"),
    "train, too many parameters": ("bench_train", ["--wf", "64", "--depth", "7"], r"HINet of 1,420,434,054 parameters"),
    "flare, size": ("bench_flare", ["--size", "1x"], r"--size '1x' is not HEIGHTxWIDTH"),
    "flare, pairs": ("bench_flare", ["--pairs", "0"], r"--pairs 0 is not from 1 to 100"),
    "inference, parts": ("bench_inference", ["--parts", "1,x"], r"--parts '1,x' names no section or an unknown one"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BENCH))
def test_bench_flags_out_of_range_are_one_sentence(tmp_path, capsys, monkeypatch, case):
    import importlib

    name, argv, pattern = BENCH[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "1").mkdir()
    cv2.imwrite(str(tmp_path / "1" / "a.png"), np.zeros((16, 16, 3), np.uint8))
    model = tiny_model()
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 16}, "m.pth")
    module = importlib.import_module(f"bench.{name}")
    code, _, err = run_cli(module, [*(["--weights", "m.pth"] if name == "bench_deploy" else []), *argv], capsys)
    _refused(code, err, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "m.pth"]


def test_a_multi_page_tiff_is_refused_rather_than_cut_to_its_first_page(tmp_path):
    pages = [Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    pages[0].save(tmp_path / "single.tif")
    assert inspect_image(tmp_path / "single.tif") == ((16, 16), None)
    size, problem = inspect_image(tmp_path / "stack.tif")
    assert size == (16, 16) and "holds 3 pages (a multi-page TIFF)" in problem

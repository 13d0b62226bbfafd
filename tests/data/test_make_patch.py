import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import make_patch
from conftest import FIXTURES, ROOT, run_cli
from utils.core.tiling import tile_starts
from utils.data.patches import bright_counts

REF = FIXTURES / "patch_reference"


def _args(src: Path, save: Path, *extra) -> list:
    return [
        "--folds", 3, "--valid_fold", 0, "--process_num", 2, "--no_progress",
        "--input_path", src / "train_input_img", "--target_path", src / "train_label_img",
        "--csv_path", src, "--save_path", save, *extra,
    ]  # fmt: skip


def _listing(train_dir: Path) -> list[str]:
    lines = []
    for path in sorted(train_dir.rglob("*.png")):
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        lines.append(f"{path.relative_to(train_dir)} {img.shape} {hashlib.md5(img.tobytes()).hexdigest()}")
    return lines


def _cubic_matrix(out_len: int, in_len: int) -> np.ndarray:
    """OpenCV's bicubic resampling (a = -0.75, pixel-centre mapping, clamped border) as a float64 matrix."""
    x = (np.arange(out_len) + 0.5) * in_len / out_len - 0.5
    x0 = np.floor(x).astype(int)
    t = x - x0
    a = -0.75
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    weights = np.stack([w0, w1, w2, 1 - w0 - w1 - w2], 1)
    matrix = np.zeros((out_len, in_len))
    for k in range(4):
        np.add.at(matrix, (np.arange(out_len), np.clip(x0 + k - 1, 0, in_len - 1)), weights[:, k])
    return matrix


def _reference_resize(src_dir: Path, patch_name: str, resize: int) -> np.ndarray:
    """An independent float64 bicubic resize of the 512 crop a larger-patch file was cut from."""
    index, crop, source = patch_name.split("_", 2)
    img = cv2.imread(str(src_dir / source)).astype(np.float64)
    crop = int(crop)
    tops = tile_starts(img.shape[0], crop, crop // 2, "shift")
    lefts = tile_starts(img.shape[1], crop, crop // 2, "shift")
    top, left = tops[int(index) // len(lefts)], lefts[int(index) % len(lefts)]
    m = _cubic_matrix(resize, crop)
    piece = img[top : top + crop, left : left + crop]
    return np.clip(np.round(np.einsum("ij,jkc,lk->ilc", m, piece, m, optimize=True)), 0, 255)


def test_reproduces_original_patches_and_folds(train_original, capsys):
    """Same files and pixels as the original. OpenCV's bicubic resize by a non-integer factor
    (512 to 352) differs by one grey level in a few pixels between CPU instruction sets
    (AVX2 against AVX-512); where a hash differs, those patches must lie within one grey
    level of an independent float64 bicubic resize of the right crop."""
    save = train_original.parent
    for size, stride in ((256, 128), (352, 176)):
        code, out, err = run_cli(
            make_patch, _args(train_original, save, "--img_size", size, "--stride", stride, "--resize", size), capsys
        )
        assert code == 0, err
    expected = sorted((REF / "expected_patches.txt").read_text().splitlines())
    got = _listing(save / "train")
    assert [line.rsplit(" ", 1)[0] for line in got] == [line.rsplit(" ", 1)[0] for line in expected]
    differ = [g.split()[0] for g, e in zip(got, expected) if g != e]
    assert all("resize352" in p and "_512_" in p for p in differ), differ
    for rel in differ:
        folder = "train_input_img" if "/input/" in rel else "train_label_img"
        patch = cv2.imread(str(save / "train" / rel)).astype(np.float64)
        assert np.abs(patch - _reference_resize(train_original / folder, Path(rel).name, 352)).max() <= 1, rel
    assert (train_original / "train_10fold.csv").read_text() == (REF / "expected_train_10fold.csv").read_text()
    info = json.loads((save / "train/10Folds/0/resize352/patch_info.json").read_text())
    assert info["patches_per_crop"] == {"352": 27, "512": 12}
    assert info["total"] == sum(1 for line in expected if "resize352/input" in line)


def test_threshold_and_growth_follow_the_rules(train_original, capsys):
    save = train_original.parent
    code, _, err = run_cli(
        make_patch,
        _args(
            train_original,
            save,
            "--img_size",
            128,
            "--stride",
            64,
            "--resize",
            128,
            "--patch_growth_count",
            3,
            "--v_threshold",
            3000,
        ),
        capsys,
    )
    assert code == 0, err
    out = save / "train/10Folds/0/resize128/input"
    folds = pd.read_csv(train_original / "train_10fold.csv")
    names = folds[folds.fold != 0].input_img.tolist()
    for name in names:
        img = cv2.imread(str(train_original / "train_input_img" / name))
        h, w = img.shape[:2]
        # base rule: brute-force HSV count on zero-padded crops
        kept = 0
        for top in range(0, h, 64):
            for left in range(0, w, 64):
                crop = np.zeros((128, 128, 3), np.uint8)
                part = img[top : top + 128, left : left + 128]
                crop[: part.shape[0], : part.shape[1]] = part
                kept += int((cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[..., 2] > 200).sum() >= 3000)
        assert len(list(out.glob(f"?????_{name}"))) == kept
        assert kept > 0
        # larger rules: every shifted crop kept and resized, step 2 = 512/256, step 3 = 3*128/3*64
        for crop, stride in ((512, 256), (384, 192)):
            expected = len(tile_starts(h, crop, stride, "shift")) * len(tile_starts(w, crop, stride, "shift"))
            assert len(list(out.glob(f"?????_{crop}_{name}"))) == expected
            assert cv2.imread(str(next(out.glob(f"00000_{crop}_{name}")))).shape == (128, 128, 3)


def test_summed_area_counts_equal_per_crop_counts():
    rng = np.random.default_rng(0)
    img = rng.integers(150, 256, (70, 90, 3), dtype=np.uint8)
    tops, lefts = tile_starts(70, 32, 16, "all"), tile_starts(90, 32, 16, "all")
    counts = bright_counts(img, tops, lefts, 32)
    for i, y in enumerate(tops):
        for j, x in enumerate(lefts):
            hsv = cv2.cvtColor(np.ascontiguousarray(img[y : y + 32, x : x + 32]), cv2.COLOR_BGR2HSV)
            assert counts[i, j] == (hsv[..., 2] > 200).sum()


def _nothing_written(src: Path, save: Path) -> bool:
    return not (save / "train").exists() and not (src / "train_10fold.csv").exists()


def _write_png(path: Path, img: np.ndarray) -> None:
    cv2.imwrite(str(path), img)


def _float_tiff(src: Path, folder: str, stem: str) -> None:
    """Replace one listed PNG by a float32 TIFF (a type the project cannot train on)."""
    cv2.imwrite(str(src / folder / f"{stem}.tif"), np.random.default_rng(0).random((600, 800, 3), np.float32))
    (src / "train.csv").write_text((src / "train.csv").read_text().replace(f"{stem}.png", f"{stem}.tif"))


BAD_INPUTS = {
    "missing input folder": (lambda s: shutil.rmtree(s / "train_input_img"), [], "--input_path folder .* does not exist"),
    "missing csv": (lambda s: (s / "train.csv").unlink(), [], r"train\.csv does not exist"),
    "csv without columns": (lambda s: (s / "train.csv").write_text("a,b\n1,2\n"), [], "lacks the column"),
    "listed file missing": (lambda s: (s / "train_label_img/train_label_10002.png").unlink(), [], r"train_label_10002\.png is listed in train\.csv but does not exist"),
    "undecodable file": (lambda s: (s / "train_input_img/train_input_10001.png").write_bytes(b"not an image"), [], r"train_input_10001\.png cannot be decoded"),
    "size mismatch": (lambda s: _write_png(s / "train_label_img/train_label_10003.png", np.zeros((100, 100, 3), np.uint8)), [], r"train_input_10003\.png is \d+x\d+ but train_label_10003\.png is 100x100"),
    "valid fold out of range": (lambda s: None, ["--valid_fold", 3], r"--valid_fold must be between 0 and 2"),
    "non-positive stride": (lambda s: None, ["--stride", 0], "--stride must be at least 1"),
    "duplicated row": (lambda s: (s / "train.csv").write_text((s / "train.csv").read_text() + "10000,train_input_10000.png,train_label_10000.png\n"), [], r"lists img_id '10000' more than once"),
    "duplicated file name": (lambda s: (s / "train.csv").write_text((s / "train.csv").read_text() + "10009,train_input_10000.png,train_label_10009.png\n"), [], r"lists input_img 'train_input_10000\.png' more than once"),
    "empty cell": (lambda s: (s / "train.csv").write_text((s / "train.csv").read_text() + "10009,,train_label_10009.png\n"), [], r"row 7 has an empty input_img"),
    "numeric file names": (lambda s: (s / "train.csv").write_text("img_id,input_img,label_img\n" + "".join(f"{i},{i},{i + 9}\n" for i in range(5))), [], r"train_input_img/0 is listed in train\.csv but does not exist"),
    "stride larger than crop": (lambda s: None, ["--stride", 300], r"--stride 300 is larger than --img_size 256, which would leave gaps"),
    "float TIFF input": (lambda s: _float_tiff(s, "train_input_img", "train_input_10001"), [], r"train_input_10001\.tif has pixel type float32"),
    "image smaller than crop": (
        lambda s: [_write_png(s / f"train_{k}_img/train_{k}_10000.png", np.full((400, 600, 3), 255, np.uint8)) for k in ("input", "label")],
        [], r"train_input_10000\.png is 400x600, smaller than the 512x512 crop",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_sentence_and_writes_nothing(train_original, capsys, case):
    damage, extra, message = BAD_INPUTS[case]
    damage(train_original)
    code, out, err = run_cli(make_patch, _args(train_original, train_original.parent, *extra), capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert pytest.importorskip("re").search(message, err), err
    assert _nothing_written(train_original, train_original.parent)


def test_worker_failure_stops_the_run_naming_the_image(train_original, capsys):
    # a valid PNG header on corrupt data passes the up-front check and fails inside a worker
    target = train_original / "train_input_img/train_input_10002.png"
    target.write_bytes(target.read_bytes()[:200])
    code, _, err = run_cli(make_patch, _args(train_original, train_original.parent), capsys)
    assert code == 2 and "train_input_10002.png" in err and "nothing was written" in err
    assert "UserError" not in err and ".;" not in err, err  # the worker's sentence, quoted once
    assert _nothing_written(train_original, train_original.parent)
    assert not list((train_original.parent).glob("train/**/.resize*"))


def test_rerun_refuses_then_overwrite_replaces(train_original, capsys):
    save = train_original.parent
    assert run_cli(make_patch, _args(train_original, save), capsys)[0] == 0
    folder = save / "train/10Folds/0/resize256"
    before = sorted(p.name for p in (folder / "input").iterdir())
    code, _, err = run_cli(make_patch, _args(train_original, save, "--v_threshold", 5000), capsys)
    assert code == 2 and "already holds results" in err and "--overwrite" in err
    assert sorted(p.name for p in (folder / "input").iterdir()) == before
    assert run_cli(make_patch, _args(train_original, save, "--v_threshold", 5000, "--overwrite"), capsys)[0] == 0
    after = sorted(p.name for p in (folder / "input").iterdir())
    assert set(after) < set(before)  # a stricter threshold keeps a subset, nothing left over from the first run
    assert json.loads((folder / "patch_info.json").read_text())["settings"]["v_threshold"] == 5000


def test_odd_formats_are_converted_with_a_warning(train_original, capsys):
    src = train_original / "train_input_img/train_input_10000.png"
    img = cv2.imread(str(src))
    cv2.imwrite(str(src), cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
    lbl = train_original / "train_label_img/train_label_10000.png"
    cv2.imwrite(str(lbl), cv2.imread(str(lbl)).astype(np.uint16) * 257)
    code, out, err = run_cli(make_patch, _args(train_original, train_original.parent), capsys)
    assert code == 0, err
    assert "grey-scale to colour" in err and "16-bit to 8-bit" in err
    patch = next((train_original.parent / "train/10Folds/0/resize256/target").glob("*_train_label_10000.png"))
    assert cv2.imread(str(patch), cv2.IMREAD_UNCHANGED).dtype == np.uint8


def test_command_line_exit_status(train_original):
    result = subprocess.run(
        [sys.executable, str(ROOT / "make_patch.py"), *map(str, _args(train_original, train_original.parent, "--folds", 1))],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --folds must be at least 2 (got 1)."


def _kill_on(name: str):
    """An extract_pair that dies like an out-of-memory kill on one image."""
    from utils.data import patches

    original = patches.extract_pair

    def extract(input_path, *args):
        if input_path.name == name:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(input_path, *args)

    return extract


def test_a_killed_worker_stops_the_run_within_seconds(train_original, capsys, monkeypatch):
    from utils.data import patches

    monkeypatch.setattr(patches, "extract_pair", _kill_on("train_input_10003.png"))
    start = time.time()
    code, _, err = run_cli(make_patch, _args(train_original, train_original.parent), capsys)
    assert time.time() - start < 20
    assert code == 2 and err.count("\n") == 1
    assert "(killed by signal 9) while working on train_input_10003.png" in err and "--process_num" in err
    assert _nothing_written(train_original, train_original.parent)
    assert not [pid for pid in _children_of(os.getpid()) if _state(pid) != "Z"]  # no orphan left


SLOW_RUN = """
import sys, time
sys.path.insert(0, {root!r})
import make_patch
from utils.data import patches
from utils.core.cli import run_cli
def slow(*args):
    time.sleep(60)
patches.extract_pair = slow
sys.exit(run_cli(make_patch.main, {argv!r}))
"""


def test_sigterm_stops_workers_and_leaves_nothing(train_original):
    argv = [str(a) for a in _args(train_original, train_original.parent)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN.format(root=str(ROOT), argv=argv)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 30
    while time.time() < deadline and not list(train_original.parent.glob("train/10Folds/0/.resize256.partial-*")):
        time.sleep(0.2)
    time.sleep(1)
    workers = _children_of(proc.pid)
    assert workers, "the workers should be running"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 130
    assert "interrupted" in proc.stderr.read()
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert _nothing_written(train_original, train_original.parent)


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_zero_patches_is_an_error_and_keeps_the_old_set(train_original, capsys):
    save = train_original.parent
    assert run_cli(make_patch, _args(train_original, save), capsys)[0] == 0
    folder = save / "train/10Folds/0/resize256"
    before = sorted(p.name for p in (folder / "input").iterdir())
    extra = ["--v_threshold", 10**9, "--patch_growth_count", 1, "--overwrite"]
    code, _, err = run_cli(make_patch, _args(train_original, save, *extra), capsys)
    assert code == 2 and "no patch was kept" in err and "nothing was replaced" in err
    assert sorted(p.name for p in (folder / "input").iterdir()) == before


def test_dataset_flag_names_the_patch_folder(train_original, capsys):
    code, out, err = run_cli(make_patch, _args(train_original, train_original.parent, "--dataset", "Night"), capsys)
    assert code == 0, err
    assert (train_original.parent / "train/Night/0/resize256/patch_info.json").is_file()
    code, _, err = run_cli(make_patch, _args(train_original, train_original.parent, "--dataset", "../x"), capsys)
    assert code == 2 and "must be a plain folder name" in err

import hashlib

import numpy as np
import pandas as pd
import pytest

import make_patch
from conftest import run_cli
from scripts.demo_data import PHOTOS, generate, load_photo, make_pair
from utils.core.errors import UserError


def _digest(root):
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.png"))
    }


def test_layout_and_make_patch_accept_it(tmp_path, capsys):
    root = tmp_path / "data"
    info = generate(root, train_count=4, test_count=2, height=192, width=256, progress=False)
    assert info["train"] == 4
    df = pd.read_csv(root / "train_original/train.csv")
    assert list(df.columns) == ["img_id", "input_img", "label_img"]
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
    src = root / "train_original"
    code, out, err = run_cli(make_patch, [
        "--folds", 2, "--patch_growth_count", 1, "--v_threshold", 50, "--process_num", 1, "--no_progress",
        "--input_path", src / "train_input_img", "--target_path", src / "train_label_img", "--csv_path", src, "--save_path", root,
    ], capsys)  # fmt: skip
    assert code == 0, err
    assert int(out.split()[0]) > 0


def test_deterministic_per_seed(tmp_path):
    a, b, c = (generate(tmp_path / n, 2, 1, 96, 128, seed=s, progress=False) and _digest(tmp_path / n)
               for n, s in (("a", 5), ("b", 5), ("c", 6)))  # fmt: skip
    assert a == b
    assert all(a[k] != c[k] for k in a)


def test_refuses_existing_data(tmp_path):
    generate(tmp_path, 2, 1, 96, 128, progress=False)
    with pytest.raises(UserError, match="already holds results; pass --overwrite"):
        generate(tmp_path, 2, 1, 96, 128, progress=False)
    generate(tmp_path, 3, 1, 96, 128, overwrite=True, progress=False)
    assert len(list((tmp_path / "train_original/train_input_img").iterdir())) == 3


def test_overwrite_never_replaces_a_users_data(tmp_path):
    """The contest data dropped into data/ has no demo marker: --overwrite must not delete it."""
    real = tmp_path / "train_original"
    (real / "train_input_img").mkdir(parents=True)
    (real / "train_input_img" / "train_input_10000.png").write_bytes(b"contest image")
    (real / "train.csv").write_text("img_id,input_img,label_img\n")
    with pytest.raises(UserError, match="which this project did not write"):
        generate(tmp_path, 2, 1, 96, 128, overwrite=True, progress=False)
    assert (real / "train_input_img" / "train_input_10000.png").read_bytes() == b"contest image"
    assert not (tmp_path / "test_input_img").exists()


def test_train_and_test_photos_are_disjoint():
    train = {n for n, (split, _) in PHOTOS.items() if split == "train"}
    test = {n for n, (split, _) in PHOTOS.items() if split == "test"}
    assert train and test and not train & test


def test_degradation_concentrates_around_lights():
    psnrs, ratios = [], []
    for i, name in enumerate(PHOTOS):
        noisy, clean, centres = make_pair(load_photo(name), 288, 384, np.random.default_rng(i))
        diff = np.abs(noisy.astype(float) - clean).mean(axis=-1)
        yy, xx = np.mgrid[:288, :384]
        dist = np.min([np.hypot(yy - cy, xx - cx) for cy, cx in centres], axis=0)
        ratios.append(diff[dist < 20].mean() / diff[dist > 80].mean())
        psnrs.append(10 * np.log10(255**2 / np.mean((noisy.astype(float) - clean) ** 2)))
    assert min(ratios) > 3, ratios
    assert 18 < np.mean(psnrs) < 30, psnrs

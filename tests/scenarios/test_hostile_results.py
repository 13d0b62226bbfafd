"""Inputs that would give a wrong result are refused: one sentence, exit status 2, nothing written.

Checkpoints (NaN weights, impossible or absurd architectures, impossible patch sizes), model
outputs that are not finite, ensemble weights, an --eval_dir that is the input folder, fit data
that cannot teach anything, train.csv paths, resume files and an ablation study that would run
nothing.
"""

import re
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import main as train_script
import make_patch
import models.checkpoint as checkpoint_module
from conftest import load_script, run_cli, tiny_model, tree_hashes
from models.checkpoint import save_checkpoint
from models.hinet import HINetConfig
from scripts import ablation
from utils.data.images import read_rgb

test_script = load_script("test")


def _refused(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert re.search(pattern, err), err


def _image(path: Path, size: tuple[int, int], seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8))


def _project(model=None, **extra) -> dict:
    model = model or tiny_model()
    return {"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 16, **extra}


def _with(tensor_name: str, value: float) -> dict:
    state = tiny_model().state_dict()
    state[tensor_name].view(-1)[0] = value
    return {"state_dict": state, "model_config": tiny_model().config.to_dict(), "img_size": 16}


def _bare(wf: int, levels) -> dict:
    """Tensors named as a HINet of width ``wf`` with encoder levels ``levels``: tiny, whatever they claim."""
    state = {"conv_01.weight": torch.zeros(wf, 3, 3, 3)}
    state |= {f"down_path_1.{i}.conv_1.weight": torch.zeros(1) for i in levels}
    return state


def _config(**changes) -> dict:
    return _project(model_config={**tiny_model().config.to_dict(), **changes})


def _nan_output() -> dict:
    """Finite weights whose first convolution overflows: the model's output is NaN."""
    model = tiny_model()
    with torch.no_grad():
        w = model.conv_01.weight
        w.copy_(torch.sign(torch.randn_like(w)) * 3e38)
    return _project(model)


@pytest.fixture
def infer(tmp_path, monkeypatch):
    """A working folder with in/ (one small image) and a guard: no model larger than a tiny one is allocated."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "in" / "test_input_1.png", (16, 20))
    real = checkpoint_module.HINet

    def guarded(config=None, **overrides):
        c = replace(config or HINetConfig(), **overrides)
        on_meta = torch.empty(0).device.type == "meta"
        assert on_meta or (c.wf * 2**c.depth <= 64 * 2**5), f"a model of wf {c.wf}, depth {c.depth} was allocated"
        return real(config, **overrides)

    monkeypatch.setattr(checkpoint_module, "HINet", guarded)
    return tmp_path


BASE = ["--input_dir", "in", "--output_dir", "out", "--no_progress"]

CHECKPOINTS = {
    "nan weight": (lambda: _with("conv_01.weight", float("nan")), [], r"m\.pth holds NaN or infinite values in 1 tensor\(s\) \(conv_01\.weight\)"),
    "infinite bias": (lambda: _with("last.bias", float("inf")), [], r"m\.pth holds NaN or infinite values in 1 tensor\(s\) \(last\.bias\)"),
    "relu slope above 1": (lambda: _config(relu_slope=1.5), [], r"m\.pth states an impossible architecture: relu_slope 1\.5"),
    "negative relu slope": (lambda: _config(relu_slope=-0.2), [], r"impossible architecture: relu_slope -0\.2"),
    "nan relu slope": (lambda: _config(relu_slope=float("nan")), [], r"impossible architecture: relu_slope nan"),
    "grey-scale model": (lambda: _project(tiny_model(in_chn=1)), [], r"impossible architecture: in_chn 1 \(this project restores 3-channel RGB"),
    "zero width": (lambda: _bare(0, range(3)), ["--tile_sizes", 16], r"impossible architecture: wf 0"),
    "absurd depth": (lambda: _bare(4, [0, 40]), ["--tile_sizes", 16], r"impossible architecture: depth 41 \(from 1 to 10"),
    "absurd parameter count": (lambda: _bare(1024, range(5)), ["--tile_sizes", 16], r"states an architecture of [\d,]+ parameters \(wf 1024, depth 5\), more than"),
    "patch size zero": (lambda: _project(img_size=0), [], r"m\.pth states a training img_size 0, not a patch size"),
    "patch size absurd": (lambda: _project(img_size=10**7), [], r"img_size 10000000, not a patch size from 1 to 8192"),
    "patch size text": (lambda: _project(img_size="256"), ["--tile_sizes", 16], r"img_size '256', not a patch size"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CHECKPOINTS))
def test_checkpoints_that_cannot_be_right(infer, capsys, case):
    make, extra, pattern = CHECKPOINTS[case]
    torch.save(make(), infer / "m.pth")
    before = tree_hashes(infer)
    code, _, err = run_cli(test_script, ["--weights", "m.pth", *BASE, *extra], capsys)
    _refused(code, err, pattern)
    assert tree_hashes(infer) == before


@pytest.mark.parametrize("img_size", [None, 30])
def test_a_sound_checkpoint_still_loads(infer, capsys, img_size):
    """Any patch size is sound: the model pads each 30-pixel tile to its multiple (32) and crops it back."""
    torch.save(_project(**({} if img_size is None else {"img_size": img_size})), infer / "m.pth")
    code, _, err = run_cli(test_script, ["--weights", "m.pth", *BASE, "--no_zip"], capsys)
    assert code == 0, err
    assert read_rgb(infer / "out" / "test_1.png").shape == (16, 20, 3)


def test_pretrained_weights_with_nan_are_refused(tmp_path):
    from models.checkpoint import extract_state_dict, read_checkpoint
    from utils.core.errors import UserError

    torch.save(_with("conv_01.weight", float("nan")), tmp_path / "nan.pth")
    with pytest.raises(UserError, match=r"nan\.pth holds NaN or infinite values"):
        extract_state_dict(read_checkpoint(tmp_path / "nan.pth"), tmp_path / "nan.pth")  # main.py --pretrained_path


def test_a_model_output_that_is_not_finite_is_never_written(infer, capsys):
    torch.save(_nan_output(), infer / "m.pth")
    code, _, err = run_cli(test_script, ["--weights", "m.pth", *BASE], capsys)
    _refused(code, err, r"m\.pth restored image test_input_1\.png to NaN or infinite values")
    assert not (infer / "out").exists()


ENSEMBLE = {
    "zero": [0, 5],
    "negative": [-1, 2],
    "nan": ["nan", 1],
    "infinite": ["inf", 1],
    "sum overflows": [1e308, 1e308],
}


@pytest.mark.parametrize("case", list(ENSEMBLE))
def test_ensemble_weights_must_be_finite_and_positive(infer, capsys, case):
    torch.save(_project(tiny_model(seed=1)), infer / "a.pth")
    torch.save(_project(tiny_model(seed=2)), infer / "b.pth")
    argv = ["--weights", "a.pth", "b.pth", *BASE, "--ensemble_weights", *ENSEMBLE[case]]
    code, _, err = run_cli(test_script, argv, capsys)
    _refused(code, err, r"--ensemble_weights (must be finite and positive|are too large to add up)")
    assert not (infer / "out").exists()


@pytest.mark.parametrize("eval_dir", ["in", "in/../in", "link"])
def test_eval_dir_that_is_the_input_folder(infer, capsys, eval_dir):
    torch.save(_project(), infer / "m.pth")
    (infer / "link").symlink_to(infer / "in")
    code, _, err = run_cli(test_script, ["--weights", "m.pth", *BASE, "--eval_dir", eval_dir], capsys)
    _refused(code, err, r"--eval_dir .* is the input folder .*: each input would be scored against itself")
    assert not (infer / "out").exists()


FIT = {
    "empty fit folder": ("empty", "fitlab", "a", r"--fit_input_dir empty holds no images"),
    "no labels": ("fitin", "empty", "a", r"--fit_label_dir empty holds no images"),
    "labels identical to the inputs": ("fitin", "copies", "a", r"every clean image is identical to its input"),
    "label folder is the input folder": ("fitin", "fitin", "a", r"every clean image is identical to its input"),
    "model output not finite": ("fitin", "fitlab", "nan", r"nan\.pth restored a held-out --fit_weights image to NaN"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FIT))
def test_fit_data_that_cannot_teach_anything(infer, capsys, case):
    fit_in, fit_labels, first, pattern = FIT[case]
    torch.save(_project(tiny_model(seed=1)), infer / "a.pth")
    torch.save(_nan_output(), infer / "nan.pth")
    torch.save(_project(tiny_model(seed=2)), infer / "b.pth")
    (infer / "empty").mkdir()
    for i in range(2):
        _image(infer / "fitin" / f"train_input_{i}.png", (16, 20), seed=i + 5)
        blurred = cv2.GaussianBlur(cv2.imread(str(infer / "fitin" / f"train_input_{i}.png")), (5, 5), 2)
        (infer / "fitlab").mkdir(exist_ok=True)
        cv2.imwrite(str(infer / "fitlab" / f"train_label_{i}.png"), blurred)
    shutil.copytree(infer / "fitin", infer / "copies")
    before = tree_hashes(infer)
    argv = ["--weights", f"{first}.pth", "b.pth", *BASE, "--tile_sizes", 16, 16, "--fit_weights",
            "--fit_input_dir", fit_in, "--fit_label_dir", fit_labels]  # fmt: skip
    code, _, err = run_cli(test_script, argv, capsys)
    _refused(code, err, pattern)
    assert tree_hashes(infer) == before


def _row(src: Path, input_img: str, label_img: str) -> None:
    rows = (src / "train.csv").read_text()
    (src / "train.csv").write_text(f"{rows}{10100 + rows.count(chr(10))},{input_img},{label_img}\n")


def _same_name_in_two_folders(src: Path) -> None:
    for sub, n in (("a", 10000), ("b", 10001)):
        for folder, kind in (("train_input_img", "input"), ("train_label_img", "label")):
            (src / folder / sub).mkdir()
            shutil.copy(src / folder / f"train_{kind}_{n}.png", src / folder / sub / ("s.png" if kind == "input" else f"l{n}.png"))  # fmt: skip
        _row(src, f"{sub}/s.png", f"{sub}/l{n}.png")


def _outside(src: Path, absolute: bool) -> None:
    shutil.copy(src / "train_input_img" / "train_input_10000.png", src.parent / "x.png")
    shutil.copy(src / "train_label_img" / "train_label_10000.png", src.parent / "y.png")
    if absolute:
        _row(src, str((src.parent / "x.png").resolve()), str((src.parent / "y.png").resolve()))
    else:
        _row(src, "../../x.png", "../../y.png")


def _link(src: Path) -> None:
    (src / "train_input_img" / "alias.png").symlink_to(src / "train_input_img" / "train_input_10000.png")
    shutil.copy(src / "train_label_img" / "train_label_10000.png", src / "train_label_img" / "other.png")
    _row(src, "alias.png", "other.png")


TRAIN_CSV = {
    "./ names the same file": (lambda src: _row(src, "./train_input_10000.png", "./train_label_10000.png"), r"lists input_img '\./train_input_10000\.png' more than once"),
    "a path leaving the folder": (lambda src: _outside(src, False), r"row 7 names input_img '\.\./\.\./x\.png', which lies outside the train_input_img folder"),
    "an absolute path": (lambda src: _outside(src, True), r"row 7 names input_img '/.*x\.png', which lies outside the train_input_img folder"),
    "one name in two sub-folders": (_same_name_in_two_folders, r"lists two input_img files named 's\.png' \(a/s\.png and b/s\.png\)"),
    "a link to a listed file": (_link, r"train\.csv lists 'train_input_10000\.png' and 'alias\.png', which are one file"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRAIN_CSV))
def test_train_csv_paths(train_original, capsys, case):
    change, pattern = TRAIN_CSV[case]
    change(train_original)
    data = train_original.parent
    before = tree_hashes(data)
    src = train_original
    argv = ["--folds", 3, "--process_num", 1, "--no_progress", "--input_path", src / "train_input_img",
            "--target_path", src / "train_label_img", "--csv_path", src, "--save_path", data]  # fmt: skip
    code, _, err = run_cli(make_patch, argv, capsys)
    _refused(code, err, pattern)
    assert tree_hashes(data) == before


def test_fold_csv_paths_leaving_the_folder_are_refused(tmp_path):
    from utils.core.errors import UserError
    from utils.data.folds import read_fold_csv

    (tmp_path / "train_10fold.csv").write_text("img_id,input_img,label_img,fold\n1,../secret.png,a.png,0\n")
    with pytest.raises(UserError, match=r"row 2 names input_img '\.\./secret\.png', which lies outside"):
        read_fold_csv(tmp_path / "train_10fold.csv")


def _resumable(tmp_path: Path) -> tuple[dict, Path]:
    """A last.pth as a run of 3 epochs (width 4, depth 3) writes it after epoch 1."""
    from utils.core.runtime import rng_state
    from utils.train.config import TrainConfig

    model = tiny_model()
    cfg = TrainConfig(data_path=str(tmp_path / "data"), model_path=str(tmp_path / "r"), wf=4, depth=3, epochs=3)
    ckpt = {"epoch": 1, "state_dict": model.state_dict(), "optimizer": torch.optim.Adam(model.parameters()).state_dict(),
            "model_config": model.config.to_dict(), "img_size": 256, "config": asdict(cfg), "best_psnr": 20.5,
            "best_epoch": 1, "early_stop": 0, "aug_version": 1, "rng": rng_state()}  # fmt: skip
    return ckpt, cfg.exp_dir / "last.pth"


def _nan_state() -> dict:
    state = tiny_model().state_dict()
    state["last.weight"].view(-1)[0] = float("nan")
    return state


RESUME = {
    "epoch as text": ({"epoch": "1"}, [], r"holds epoch '1', where the epochs done"),
    "negative epoch": ({"epoch": -1}, [], r"holds epoch -1, where the epochs done, a whole number from 0 to the run's 3"),
    "epoch beyond the run": ({"epoch": 99}, ["--epochs", 200], r"holds epoch 99, where the epochs done, a whole number from 0 to the run's 3"),
    "config not a mapping": ({"config": ["wf", 4]}, [], r"holds config list, where the run's settings \(a mapping\)"),
    "nan best PSNR": ({"best_psnr": float("nan")}, [], r"holds best_psnr nan, where a finite PSNR"),
    "infinite best PSNR": ({"best_psnr": float("inf")}, [], r"holds best_psnr inf"),
    "-inf after an epoch": ({"best_psnr": float("-inf")}, [], r"holds best_psnr -inf, where a finite PSNR belongs \(-inf only before"),
    "best PSNR as text": ({"best_psnr": "20.5"}, [], r"holds best_psnr '20\.5'"),
    "best epoch ahead": ({"best_epoch": 2}, [], r"holds best_epoch 2, where an epoch from 0 to 1"),
    "negative early stop": ({"early_stop": -1}, [], r"holds early_stop -1"),
    "fractional early stop": ({"early_stop": 0.5}, [], r"holds early_stop 0\.5"),
    "no random state": ({"rng": None}, [], r"holds rng None, where the random-number states"),
    "empty random state": ({"rng": {}}, [], r"holds rng dict"),
    "optimizer missing its state": ({"optimizer": {"lr": 1}}, [], r"holds optimizer dict, where the optimizer's state"),
    "no weights": ({"state_dict": {}}, [], r"holds state_dict dict, where the model's weights"),
    "weights of another width": ({"state_dict": tiny_model(wf=8).state_dict()}, [], r"last\.pth does not match the model architecture: .* of another shape"),
    "weights with nan": ({"state_dict": _nan_state()}, [], r"last\.pth holds NaN or infinite values in 1 tensor\(s\) \(last\.weight\)"),
    "no config": ({"config": None}, [], r"holds config None, where the run's settings"),
    "absurd width": ({"config": lambda c: {**c, "wf": 10**6}}, [], r"last\.pth states an impossible architecture: wf 1000000"),
}  # fmt: skip


def test_a_sound_resume_file_passes_the_checks(tmp_path):
    from utils.train.config import TrainConfig
    from utils.train.resume import read_resume_state

    ckpt, path = _resumable(tmp_path)
    save_checkpoint(ckpt, path)
    assert read_resume_state(TrainConfig(model_path=str(tmp_path / "r")))["epoch"] == 1
    save_checkpoint({**ckpt, "epoch": 0, "best_psnr": float("-inf"), "best_epoch": 0}, path)  # a fresh run's file
    assert read_resume_state(TrainConfig(model_path=str(tmp_path / "r")))["epoch"] == 0


@pytest.mark.parametrize("case", list(RESUME))
def test_resume_fields_that_cannot_be_right(tmp_path, capsys, case):
    changes, extra, pattern = RESUME[case]
    ckpt, path = _resumable(tmp_path)
    save_checkpoint({**ckpt, **{k: v(ckpt[k]) if callable(v) else v for k, v in changes.items()}}, path)
    before = tree_hashes(tmp_path)
    argv = ["--data_path", tmp_path / "data", "--model_path", tmp_path / "r", "--img_size", 256,
            "--num_workers", 0, "--no_progress", "--resume", *extra]  # fmt: skip
    code, _, err = run_cli(train_script, argv, capsys)
    _refused(code, err, pattern)
    assert tree_hashes(tmp_path) == before


def _study_data(root: Path, side: int) -> Path:
    src = root / "train_original"
    for i in range(2):
        _image(src / "train_input_img" / f"in_{i}.png", (side, side), i)
        _image(src / "train_label_img" / f"la_{i}.png", (side, side), i)
    (src / "train.csv").write_text("img_id,input_img,label_img\n0,in_0.png,la_0.png\n1,in_1.png,la_1.png\n")
    return root


STUDIES = {
    "every variant skipped": (64, [], r"the study would run nothing: every variant is skipped, .*\(64 pixels high or wide\)"),
    "--only names nothing runnable": (300, ["--only", "full352"], r"the study would run nothing: --only full352 names only variants skipped"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(STUDIES))
def test_a_study_that_would_run_nothing(tmp_path, capsys, case):
    side, extra, pattern = STUDIES[case]
    data = _study_data(tmp_path / "data", side)
    before = tree_hashes(tmp_path)
    argv = ["--data_path", data, "--out", tmp_path / "study", "--thresholds", 500, "--device", "cpu", *extra]
    code, _, err = run_cli(ablation, argv, capsys)
    _refused(code, err, pattern)
    assert tree_hashes(tmp_path) == before


def test_files_that_are_no_checkpoint_are_named_so(tmp_path, capsys):
    """A CSV or an image passed as a checkpoint, or a truncated one, is said to be what it is."""
    model = tiny_model()
    good = tmp_path / "good.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 32}, good)
    (tmp_path / "metrics.pth").write_text("image,psnr\na,1\n")
    (tmp_path / "cut.pth").write_bytes(good.read_bytes()[:300])
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    for name, message in (("metrics.pth", "is not a PyTorch checkpoint"), ("cut.pth", "is not a readable PyTorch")):
        argv = [
            "--weights",
            tmp_path / name,
            "--input_dir",
            tmp_path / "in",
            "--output_dir",
            tmp_path / "out",
            "--no_progress",
        ]
        code, _, err = run_cli(load_script("test"), argv, capsys)
        assert code == 2 and message in err and "--tile_sizes" not in err, err
    assert not (tmp_path / "out").exists()

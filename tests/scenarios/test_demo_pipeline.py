import shutil
from pathlib import Path

import pytest
import torch

import main as main_script
from conftest import tiny_model
from scripts import demo
from scripts.flare_data import generate
from scripts.samples import main as samples_main
from utils.core.errors import UserError
from utils.flare.data_settings import FlareDataSettings

TINY_BANK = {"psf_count": 3, "psf_grid": 128, "psf_size": 64}


def test_demo_refuses_foreign_data_and_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "test_input_img").mkdir(parents=True)
    (tmp_path / "data" / "test_input_img" / "mine.png").write_bytes(b"x")
    with pytest.raises(UserError, match="'mine.png', which this project did not write"):
        demo.check_ownership(tmp_path / "data", tmp_path / "weights")
    (tmp_path / "data" / "test_input_img" / "mine.png").unlink()
    generate(FlareDataSettings(tmp_path / "data", 2, 1, 96, 128, progress=False, workers=1, **TINY_BANK))
    demo.check_ownership(tmp_path / "data", tmp_path / "weights")  # the demo's own data: fine
    (tmp_path / "weights").mkdir()
    torch.save(
        {"state_dict": tiny_model().state_dict(), "config": {"tag": "Default"}}, tmp_path / "weights" / "256_best.pth"
    )
    with pytest.raises(UserError, match="is not a demo checkpoint"):
        demo.check_ownership(tmp_path / "data", tmp_path / "weights")


def test_sample_pictures(tmp_path, capsys):
    generate(FlareDataSettings(tmp_path / "data", 2, 2, 576, 768, progress=False, **TINY_BANK))
    for folder in ("submission_original", "submission"):  # what make demo leaves: two restorations
        (tmp_path / "results" / folder).mkdir(parents=True)
        shutil.copy(
            tmp_path / "data/test_input_img/test_input_20001.png", tmp_path / "results" / folder / "test_20001.png"
        )
    argv = ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "sample"), "--results", str(tmp_path / "results")]
    assert samples_main(argv) == 0
    names = {p.name for p in (tmp_path / "sample").iterdir()}
    assert names == {
        "Original.png", "HorizontalFlip.png", "VerticalFlip.png", "RandomRotate90.png", "ShiftScaleRotate.png",
        "ColorJitter.png", "Larger_patch_512_resize256.png", "HSV_Threshold.png", "Tiling.png", "problem.png", "seams.png",
    }  # fmt: skip
    with pytest.raises(UserError, match="generate the demo data first"):
        samples_main(["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "s2")])


def test_the_demo_continues_its_352_model_from_its_256_model(monkeypatch):
    """The demo's commands, recorded instead of run: each training command parses, the 256 run starts from
    random weights and the 352 run from the checkpoint the 256 run leaves."""
    commands = []
    monkeypatch.setattr(demo, "run", lambda cmd, **_: commands.append([str(c) for c in cmd[1:]]))
    for name in ("check_ownership", "install_checkpoint", "comparison", "print_comparison"):
        monkeypatch.setattr(demo, name, lambda *a, **k: None)
    demo.main([])
    trainings = {c[c.index("--img_size") + 1]: c for c in commands if c[0] == "main.py"}
    assert set(trainings) == {"256", "352"}
    parsed = {size: main_script.parse_args(cmd[1:]) for size, cmd in trainings.items()}
    assert parsed["256"].pretrained_path == "none"
    first_run = Path(parsed["256"].model_path) / f"{parsed['256'].exp_num:03d}" / "256_best.pth"
    assert Path(parsed["352"].pretrained_path) == first_run
    assert commands[0][:2] == ["-m", "scripts.flare_data"] and "--clean_share" in commands[0]

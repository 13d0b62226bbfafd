"""The starter model shipped in pretrained/: it loads, restores a user's photo, and is what its card says."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, load_script, run_cli
from models.checkpoint import load_model
from utils.data.images import read_rgb

STARTER = ROOT / "pretrained" / "hinet_flare_starter.pth"
test_script = load_script("test")


def test_the_starter_is_a_small_half_precision_linear_model():
    assert STARTER.stat().st_size <= 16 * 2**20
    ckpt = torch.load(STARTER, map_location="cpu", weights_only=True)
    assert {v.dtype for v in ckpt["state_dict"].values()} == {torch.float16}
    assert ckpt["img_size"] == 256 and ckpt["card"]["profile"] in ("cpu", "gpu", "finish")
    _, config, _ = load_model(STARTER)
    assert config.output == "linear" and config.wf == ckpt["card"]["wf"]


def test_its_card_is_the_recipe_scripts_starter_runs():
    """Every setting of the preset that ``python -m scripts.starter`` runs is what the shipped file was made with."""
    from utils.presets import PRESETS

    card = torch.load(STARTER, map_location="cpu", weights_only=True)["card"]
    preset = PRESETS[card["preset"]]
    recipe = preset.data | preset.patches | preset.training
    assert {k: card.get(k) for k in recipe} == recipe


def test_the_weights_it_was_finished_from_ship_beside_it():
    """A file fine-tuned from another names it in its card; that file ships too, the same architecture, so that
    ``python -m scripts.starter`` can make the shipped file again on a CPU."""
    ckpt = torch.load(STARTER, map_location="cpu", weights_only=True)
    card = ckpt["card"]
    assert ckpt["config"]["pretrained_path"] == card["pretrained_path"]  # what the run itself recorded
    start = ROOT / card["pretrained_path"]
    assert start.is_file() and start != STARTER
    (_, config, _), (_, start_config, _) = load_model(STARTER), load_model(start)
    assert config == start_config


@pytest.mark.parametrize("keep_lights", [False, True])
def test_it_restores_a_portrait_phone_photo(tmp_path, capsys, keep_lights):
    """A 96x64 landscape JPEG tagged to be shown upright as a 64x96 portrait: the output is the portrait."""
    (tmp_path / "photos").mkdir()
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60, (64, 96, 3), dtype=np.uint8)
    pixels[20:30, 40:50] = 255  # a lamp
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    image.save(tmp_path / "photos" / "night.jpg", quality=95, exif=exif.tobytes())
    args = ["--weights", STARTER, "--input_dir", tmp_path / "photos", "--output_dir", tmp_path / "restored",
            "--no_zip", "--no_progress", *(["--keep_lights"] if keep_lights else [])]  # fmt: skip
    code, out, err = run_cli(test_script, args, capsys)
    assert code == 0, err
    restored = read_rgb(tmp_path / "restored" / "night.png").astype(float)
    shown = read_rgb(tmp_path / "photos" / "night.jpg").astype(float)  # the input, upright
    lamp = (np.rot90(pixels, -1) == 255).all(axis=-1)
    assert restored.shape == (96, 64, 3)
    assert np.abs(restored - shown)[~lamp].mean() < 8  # the dark scene is left nearly as it was
    assert restored[lamp].mean() > (0.95 * shown[lamp].mean() if keep_lights else 200)  # the lamp, where it stands
    assert not (tmp_path / "restored" / "submission.zip").exists()


def test_the_finish_profile_packs_its_last_epoch_averaged_with_its_start(tmp_path):
    from conftest import tiny_model
    from scripts import starter

    start, last = tiny_model(seed=1, output="linear"), tiny_model(seed=2, output="linear")
    torch.save({"state_dict": start.state_dict()}, tmp_path / "start.pth")
    torch.save({"state_dict": last.state_dict(), "model_config": last.config.to_dict(), "img_size": 256},
               tmp_path / "last.pth")  # fmt: skip
    packed = starter.trained_weights("finish", tmp_path, tmp_path / "start.pth")
    assert torch.allclose(packed["state_dict"]["last.weight"], (start.last.weight + last.last.weight) / 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "start.pth"]  # nothing added to the run
    assert starter.trained_weights("gpu", tmp_path, None) == tmp_path / "256_best.pth"  # the best epoch, as is
    assert starter.starter_card("finish", 19.2)["averaged"] == 0.5 and "averaged" not in starter.starter_card("gpu", 9)
    for profile in starter.AVERAGED:  # each has weights to average with, which its own output never replaces
        start = starter.start_weights(starter.PROFILES[profile])
        assert start is not None and start.is_file() and start != ROOT / starter.OUTPUTS[profile]

"""The subtract output: the input less a non-negative flare in linear light, never brighter than the input."""

import pytest
import torch

import main as train_script
from conftest import tiny_model
from models.checkpoint import load_model
from models.hinet import FLARE_OFFSET, linear_to_srgb, srgb_to_linear
from utils.train.config import TrainConfig, check_config
from utils.train.losses import RestorationLoss


def _heads(model, bias: float):
    """Both stages' heads pushed to ``bias`` (plus what the random weights add)."""
    for conv in (model.sam12.conv2, model.last):
        torch.nn.init.constant_(conv.bias, bias)
    return model


def _image(seed: int = 0) -> torch.Tensor:
    """Random pixels, with exact black, white and the sRGB segment boundary among them."""
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(seed))
    x[0, :, :2] = 0.0
    x[0, :, 2:4] = 1.0
    x[1, :, :2] = 0.04045
    return x


def test_srgb_transfer_round_trips_and_is_the_standard():
    x = torch.linspace(0, 1, 1001)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-6)
    assert srgb_to_linear(torch.tensor([0.5])).item() == pytest.approx(0.214041, abs=1e-6)
    assert srgb_to_linear(torch.tensor([0.02])).item() == pytest.approx(0.02 / 12.92)
    for transfer in (srgb_to_linear, linear_to_srgb):  # finite gradients below black too, in the linear segment
        x = torch.tensor([-0.2, -1e-3, 0.0, 1e-30, 0.003, 0.5, 1.0], requires_grad=True)
        transfer(x).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad[:2].min() > 1 / 13, transfer.__name__


@pytest.mark.parametrize("bias", [0.0, FLARE_OFFSET + 0.5])
def test_output_is_never_brighter_than_the_input(bias):
    """Random weights, and heads pushed up so that much of the picture is subtracted down to black."""
    model, x = _heads(tiny_model(seed=3, output="subtract"), bias), _image()
    with torch.no_grad():
        outputs = model(x)
    for out in outputs:
        assert out.shape == x.shape and bool((out <= x).all()) and bool((out >= 0).all())
    if bias:
        assert (x - outputs[1]).max() > 0.3 and (outputs[1] == 0).float().mean() > 0.05


def test_a_very_negative_head_returns_the_input_and_an_untrained_one_nearly():
    x = _image(1)
    with torch.no_grad():
        cleared = _heads(tiny_model(seed=4, output="subtract"), -1e4)(x)
        untrained = tiny_model(seed=4, output="subtract")(x)
    for out in cleared:  # equal up to the round-off of the transfer, and never above the input even by that
        assert (out - x).abs().max() < 1e-6 and bool((out <= x).all())
    for out in untrained:  # the offset: random heads, near zero, remove under one 8-bit level
        assert 0 < (x - out).max() < 1 / 255


@pytest.mark.parametrize("bias", [0.0, FLARE_OFFSET + 0.5])
def test_gradients_reach_every_weight_and_stay_finite(bias):
    model, x = _heads(tiny_model(seed=5, output="subtract"), bias), _image(2)
    model.train()
    RestorationLoss()(model(x), x * 0.8).backward()
    for name, param in model.named_parameters():
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_the_mode_travels_with_a_checkpoint(tmp_path):
    model, x = tiny_model(seed=6, output="subtract"), _image(3)
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict()}, tmp_path / "s.pth")
    loaded, config, _ = load_model(tmp_path / "s.pth")
    assert config.output == "subtract"
    with torch.no_grad():
        assert torch.equal(loaded(x)[1], model(x)[1])


def test_main_accepts_the_choice():
    args = train_script.parse_args(["--output", "subtract"])
    cfg = TrainConfig(output=args.output)
    check_config(cfg)
    assert cfg.model_config().output == "subtract"

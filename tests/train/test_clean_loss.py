"""The clean-region loss: any change of the output where the target equals the input, weighted by --clean_weight."""

import pytest
import torch

import main as train_script
from conftest import run_cli
from utils.core.errors import UserError
from utils.train import losses, trainer
from utils.train.config import TrainConfig, check_config
from utils.train.losses import CharbonnierLoss, EdgeLoss, RestorationLoss, clean_region_loss

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _pair():
    """8-bit-like input and target that differ (flare) only in the left half; one pixel on the right differs by
    one level (clean) and one by two levels on one channel (not clean)."""
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (2, 3, 8, 8), generator=g).float() / 255
    target = image.clone()
    target[..., :4] = torch.rand(2, 3, 8, 4, generator=g)
    target[0, :, 0, 5] = (image[0, :, 0, 5] * 255 + 1) / 255
    target[0, 1, 0, 6] = (image[0, 1, 0, 6] * 255 + 2) / 255
    return image, target


def test_weight_zero_is_the_original_loss_bit_for_bit():
    image, target = _pair()
    outputs = [torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in (1, 2)]
    char, edge = CharbonnierLoss(), EdgeLoss()
    original = sum(char(o, target) for o in outputs) + 0.05 * sum(edge(o, target) for o in outputs)
    assert torch.equal(RestorationLoss()(outputs, target), original)
    assert torch.equal(RestorationLoss(clean_weight=0.0)(outputs, target, image), original)


def test_zero_when_clean_pixels_are_untouched_and_blind_to_the_rest():
    image, target = _pair()
    output = image.clone()
    output[..., :4] = 1 - image[..., :4]  # changes only where the target differs from the input
    output[0, :, 0, 6] = 0.5  # and at the pixel two levels off
    assert clean_region_loss(output, image, target).item() == 0.0
    output[1, 2, 5, 7] += 0.3  # one clean pixel, one channel
    clean_pixels = 2 * 8 * 4 - 1
    assert clean_region_loss(output, image, target).item() == pytest.approx(0.3 / (clean_pixels * 3))
    output[0, 0, 0, 5] += 0.3  # the pixel one level off counts as clean
    assert clean_region_loss(output, image, target).item() == pytest.approx(0.6 / (clean_pixels * 3))


def test_no_clean_pixel_gives_zero_and_the_weight_scales_both_stages():
    image, target = _pair()
    assert clean_region_loss(torch.zeros_like(image), image, 1 - image).item() == 0.0
    outputs = [image + 0.1, image - 0.2]
    base = RestorationLoss()(outputs, target)
    weighted = RestorationLoss(clean_weight=2.0)(outputs, target, image)
    assert (weighted - base).item() == pytest.approx(2.0 * (0.1 + 0.2), rel=1e-4)
    with pytest.raises(ValueError, match="needs the input images"):
        RestorationLoss(clean_weight=2.0)(outputs, target)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf")])
def test_a_weight_out_of_range_is_one_sentence(value):
    with pytest.raises(UserError, match=r"^--clean_weight must be zero or a positive number \(got .*\)\.$"):
        check_config(TrainConfig(clean_weight=value))


@pytest.mark.parametrize(
    "term,flag,images",
    [("clean_region_loss", "--clean_weight", 3), ("near_light_loss", "--light_weight", 3),
     ("lamp_core_loss", "--core_weight", 2)],
)  # fmt: skip
def test_the_trainer_hands_the_term_its_images(term, flag, images, patch_data, tmp_path, capsys, monkeypatch):
    """The clean-region and near-light terms get (output, input, target), the lamp-core term (output, target).
    (At weight 0 the criterion is called without the inputs: test_train's two-argument stand-in runs.)"""
    calls = []
    monkeypatch.setattr(losses, term, lambda *a: calls.append(a) or torch.zeros(()))
    monkeypatch.setattr(trainer, "validate", lambda *a: 20.0)  # the wiring is the question, not the score
    args = ["--data_path", patch_data, "--model_path", tmp_path, "--wf", 4, "--depth", 3, "--batch_size", 2,
            "--num_workers", 0, "--epochs", 1, "--steps_per_epoch", 1, "--no_progress", "--pretrained_path", "none",
            flag, 0.5]  # fmt: skip
    code, _, err = run_cli(train_script, args, capsys)
    assert code == 0, err
    first, second = calls  # both stages
    assert len(first) == len(second) == images
    assert all(t.shape == (2, 3, 256, 256) for t in first)
    assert not torch.equal(first[0], first[-1])  # an output, then the batch's target, not the output twice
    assert torch.load(tmp_path / "001" / "last.pth", weights_only=True)["config"][flag[2:]] == 0.5

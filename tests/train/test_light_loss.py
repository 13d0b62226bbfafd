"""The near-light loss: the error within a few pixels of the input's clipped lamps, weighted by --light_weight
(test_clean_loss checks that the trainer hands it the inputs); the lamp-core loss, weighted by --core_weight."""

import pytest
import torch

from utils.train.losses import NEAR_LIGHT_RADIUS, RestorationLoss, lamp_core_loss, near_light_loss

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _lamp(size: int = 64):
    """A dark input with one clipped 3x3 lamp at (20, 20), and a target one level darker (level 249) there."""
    image = torch.full((1, 3, size, size), 20 / 255)
    image[..., 19:22, 19:22] = 1.0
    target = image.clone()
    target[..., 19:22, 19:22] = 249 / 255
    return image, target


def test_counts_the_error_near_the_lamp_only():
    image, target = _lamp()
    near = 3 + 2 * NEAR_LIGHT_RADIUS  # the lamp grown by the radius on every side
    output = target.clone()
    assert near_light_loss(output, image, target).item() == 0.0
    output[..., 20, 20 + NEAR_LIGHT_RADIUS + 1] += 0.3  # the last pixel within the radius
    assert near_light_loss(output, image, target).item() == pytest.approx(0.3 / near**2)
    output[..., 20, 20 + NEAR_LIGHT_RADIUS + 2] += 0.3  # one further: not near
    output[..., 60, 60] -= 0.5
    assert near_light_loss(output, image, target).item() == pytest.approx(0.3 / near**2)


def test_a_level_249_input_has_no_lamp_and_gives_zero():
    image, target = _lamp()
    assert near_light_loss(torch.zeros_like(target), target, image).item() == 0.0  # target as input: no core


def test_the_weight_adds_the_term_for_both_stages():
    image, target = _lamp()
    outputs = [target + 0.1, target - 0.2]
    base = RestorationLoss()(outputs, target)
    weighted = RestorationLoss(light_weight=3.0)(outputs, target, image)
    assert (weighted - base).item() == pytest.approx(3.0 * (0.1 + 0.2), rel=1e-4)
    assert torch.equal(RestorationLoss(light_weight=0.0)(outputs, target, image), base)
    with pytest.raises(ValueError, match="needs the input images"):
        RestorationLoss(light_weight=3.0)(outputs, target)


def test_the_core_term_prices_only_a_lamp_left_dimmer_than_its_target():
    image, target = _lamp()
    target[..., 19:22, 19:22] = 1.0  # a clipped lamp in the target too
    output = target.clone()
    output[..., 19:22, 19:22] = 0.8  # the lamp greyed by 0.2
    assert lamp_core_loss(output, target).item() == pytest.approx(0.2)
    output[..., 40, 40] -= 0.5  # far from the lamp: not the term's business
    output[..., 22, 19:22] = 0.0  # just outside the lamp too
    assert lamp_core_loss(output, target).item() == pytest.approx(0.2)
    output[..., 19:22, 19:22] = 1.3  # brighter than the target: not this term's business either
    assert lamp_core_loss(output, target).item() == 0.0
    assert lamp_core_loss(output, image * 0.9).item() == 0.0  # a target without a clipped lamp
    base = RestorationLoss()([target - 0.1, target], target)
    weighted = RestorationLoss(core_weight=2.0)([target - 0.1, target], target)  # needs no inputs
    assert (weighted - base).item() == pytest.approx(2.0 * 0.1, rel=1e-4)

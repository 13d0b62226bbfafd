"""The flare-region loss: the error where the flare changed the input, weighted by --flare_weight
(test_clean_loss checks that the trainer hands it the inputs)."""

import pytest
import torch

from utils.train.losses import RestorationLoss, flare_region_loss

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LEVEL = 1 / 255


def _streak():
    """A target of level 30 and an input with a one-pixel streak 40 levels brighter along row 10, and 8 levels
    of noise (too little to count as flare) along row 30."""
    target = torch.full((1, 3, 48, 48), 30 * LEVEL)
    image = target.clone()
    image[..., 10, :] += 40 * LEVEL
    image[..., 30, :] += 8 * LEVEL
    return image, target


def test_counts_the_error_on_the_flare_only():
    image, target = _streak()
    assert flare_region_loss(target, image, target).item() == 0.0  # the streak removed
    assert flare_region_loss(image, image, target).item() == pytest.approx(40 * LEVEL)  # left: its whole size
    output = target.clone()
    output[..., 30, :] += 8 * LEVEL  # the noise row left, and an error off the flare
    output[..., 40, 5] -= 0.5
    assert flare_region_loss(output, image, target).item() == 0.0


def test_a_colour_jittered_patch_counts_as_one_patch():
    """Augmentation v3 jitters the input's colours: it differs from its target everywhere. The streak the model
    left in the other patch still costs half its size, not a share of the jittered patch's pixels."""
    image, target = _streak()
    jittered = target + 20 * LEVEL  # brighter everywhere
    images, targets = torch.cat([image, jittered]), torch.cat([target, target])
    outputs = torch.cat([image, target])  # the streak left; the jittered patch restored
    assert flare_region_loss(outputs, images, targets).item() == pytest.approx(40 * LEVEL / 2)
    clean = torch.cat([target, target])
    assert flare_region_loss(outputs, clean, targets).item() == 0.0  # no flare in either patch


def test_the_weight_adds_the_term_for_both_stages():
    image, target = _streak()
    outputs = [image, target]  # the first stage leaves the streak, the second removes it
    base = RestorationLoss()(outputs, target)
    weighted = RestorationLoss(flare_weight=2.0)(outputs, target, image)
    assert (weighted - base).item() == pytest.approx(2.0 * 40 * LEVEL, rel=1e-4)
    with pytest.raises(ValueError, match="needs the input images"):
        RestorationLoss(flare_weight=2.0)(outputs, target)

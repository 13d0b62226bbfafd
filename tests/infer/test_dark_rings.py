"""--floor_radius: a restoration no darker than the darkest of the input around each pixel (no dark rings)."""

import torch

from utils.infer.restore import lift_dark_rings


def _lamp(height: int, width: int) -> torch.Tensor:
    """A flat background of 0.3 with a bright lamp and its glow in the middle."""
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    glow = 0.6 * torch.exp(-((yy - height / 2) ** 2 + (xx - width / 2) ** 2) / (2 * 6.0**2))
    return (0.3 + glow).clamp(max=1).expand(3, -1, -1).clone()


def test_a_ring_dug_below_the_surroundings_is_lifted_to_them():
    image = _lamp(64, 64)
    restored = torch.full_like(image, 0.3)
    restored[:, 24:40, 24:40] = 0.1  # the model took away more than the glow: a dark ring around the lamp
    lifted = lift_dark_rings(image, restored, 0.4)  # 26 pixels: the glow (sigma 6) is within it
    assert torch.allclose(lifted, torch.full_like(image, 0.3), atol=1e-3)  # the glow removed, no ring
    assert torch.equal(lift_dark_rings(image, image, 0.4), image)  # what is not below the floor stays
    assert lift_dark_rings(image, restored, 0.05)[:, 32, 32].min() > 0.5  # a disk within the glow: its floor


def test_the_floor_is_never_above_the_input():
    """A dark detail of the input (a window frame, a shadow) is its own floor: it is not brightened."""
    image = _lamp(64, 64)
    image[:, 10:12, 10:50] = 0.05
    lifted = lift_dark_rings(image, torch.zeros_like(image), 0.1)
    assert torch.all(lifted <= image + 1e-7)
    assert torch.allclose(lifted[:, 10:12, 10:50], image[:, 10:12, 10:50])
    assert (lifted[:, 40:, :] > 0.2).all()  # far from the frame: its surroundings' 0.3, smoothed


def test_a_large_image_gets_its_floor_from_a_smaller_copy():
    image = _lamp(48, 2048)  # longer than FLOOR_SIZE: found on a copy half as long, applied at full size
    restored = torch.full_like(image, 0.3)
    restored[:, 16:32, 1000:1048] = 0.0
    lifted = lift_dark_rings(image, restored, 0.02)
    assert lifted.shape == image.shape
    assert torch.allclose(lifted[:, 16:32, 1000:1048], torch.full((3, 16, 48), 0.3), atol=1e-3)


def test_the_radius_is_a_share_of_the_long_side_at_any_size():
    """On an image twice FLOOR_SIZE long, a radius of 0.02 is 41 of its pixels: a dark input pixel 60 pixels
    from a dug ring is beyond it (the ring is lifted to its surroundings), one 30 pixels away within it."""
    image = torch.full((3, 48, 2048), 0.3)
    restored = image.clone()
    restored[:, 20:28, 1000:1008] = 0.0  # the dug ring
    image[:, 24, 1004 + 60] = 0.02  # a dark detail 60 pixels away: outside the radius
    lifted = lift_dark_rings(image, restored, 0.02)
    assert (lifted[:, 20:28, 1000:1008] > 0.25).all()
    image[:, 24, 1004 - 30] = 0.02  # and one 30 pixels away: inside it, so the ring may stay darker
    assert (lift_dark_rings(image, restored, 0.02)[:, 24, 1004] < lifted[:, 24, 1004] - 0.01).all()


def test_a_large_radius_is_found_on_a_smaller_copy_and_still_measured_on_the_long_side():
    """A radius of 0.1 would be 102 pixels on FLOOR_SIZE's copy, slow to erode: the copy is made smaller (48
    pixels of radius), and the radius is still 205 pixels of this 2,048-pixel image."""
    image = torch.full((3, 64, 2048), 0.3)
    restored = image.clone()
    restored[:, 28:36, 1000:1008] = 0.0
    image[:, 32, 1004 + 300] = 0.02  # dark, but beyond the radius
    lifted = lift_dark_rings(image, restored, 0.1)
    assert (lifted[:, 28:36, 1000:1008] > 0.25).all()
    image[:, 30:34, 1004 - 150 : 1004 - 146] = 0.02  # dark and within it: the ring may stay darker
    assert (lift_dark_rings(image, restored, 0.1)[:, 32, 1004] < lifted[:, 32, 1004] - 0.01).all()

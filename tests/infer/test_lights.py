"""--keep_lights: the input's clipped light cores blended back; the lamp-brightness measure."""

import numpy as np
import torch

from utils.data.images import from_uint8
from utils.infer.keep_lights import (
    core_brightness_ratio,
    distance_to,
    keep_lights,
    light_cores,
    light_mask,
    near_lights,
    only_near_lights,
)


def _night(size=(64, 96)) -> np.ndarray:
    """A dark picture with one clipped 9-pixel lamp, a clipped speck and a bright but unclipped window."""
    rgb = np.full((*size, 3), 20, np.uint8)
    rgb[20:29, 30:39] = 255  # lamp core
    rgb[50, 80] = 255  # a single clipped pixel: noise, not a light
    rgb[5:15, 60:80] = 200  # a lit window, below the clipping level
    return rgb


def test_cores_are_the_clipped_lights_without_specks():
    cores = light_cores(_night())
    assert cores[21:28, 31:38].all() and cores[20:29, 30:39].sum() == 81 - 4
    assert not cores[50, 80] and not cores[5:15, 60:80].any()
    assert cores.sum() == 81 - 4  # the opening rounds off the square's four corners
    for channel in range(3):  # a lamp clipped in one channel only (a red tail light, a blue LED) is a light
        one = np.full((16, 16, 3), 20, np.uint8)
        one[4:10, 4:10, channel] = 255
        assert light_cores(one).sum() == 36 - 4


def test_mask_is_whole_on_cores_and_falls_off_with_the_lamp_size():
    rgb = _night()
    mask = light_mask(rgb)
    assert (mask[light_cores(rgb)] == 1).all()
    assert 0 < mask[24, 41] < 1 and mask[24, 60] < 1e-3  # soft edge, nothing far away
    big = _night()
    big[5:59, 10:70] = 255  # 64 pixels across: an edge of 6.4 pixels, where the lamp's is the least, 4
    assert light_mask(big)[30, 72] > light_mask(rgb)[24, 41] > 0  # same gap from the edge, a wider fall-off
    assert not light_mask(np.full((8, 8, 3), 20, np.uint8)).any()


def _lamp_with_rays() -> np.ndarray:
    """A clipped lamp 25 pixels across, with a clipped ray 5 pixels thick and 14 long on its right (flare clips the
    inner part of a strong lamp's rays) and, on its left, a clipped streak that joins it to a sign."""
    rgb = np.full((120, 160, 3), 20, np.uint8)
    yy, xx = np.mgrid[:120, :160]
    rgb[(yy - 60) ** 2 + (xx - 80) ** 2 <= 12**2] = 255
    rgb[58:63, 80:106] = 255  # the ray: ends 14 pixels beyond the disc, within 1.5 of its radii
    rgb[58:63, 20:80] = 255  # the streak, 48 pixels long beyond the disc
    rgb[40:80, 10:20] = 255  # the sign it reaches
    return rgb


def test_a_lamps_clipped_spikes_are_left_to_the_model_and_a_longer_streak_is_not():
    """The blended-back mask is the lamp's disc without its short spikes (blended back, they were the stubby
    starburst left around lamps); a thin part that runs further (a streak joining a sign) stays with the core."""
    rgb = _lamp_with_rays()
    mask = light_mask(rgb, 0.4)
    yy, xx = np.mgrid[:120, :160]
    assert (mask[(yy - 60) ** 2 + (xx - 80) ** 2 <= 10**2] == 1).all()  # the lamp's body
    # the spike's end, a clipped core: only the disc's soft edge reaches it (kept whole, it was 1)
    assert mask[60, 100:106].max() < 0.5 and light_cores(rgb)[60, 100:106].all()
    assert (mask[60, 20:68] == 1).all() and (mask[41:79, 11:19] == 1).all()  # the streak and the sign: kept
    assert mask[60, 93] > 0.5  # the soft edge around the disc itself remains


def test_a_large_lamps_spikes_go_too_on_the_scaled_down_opening():
    """A lamp 81 pixels across opens on a copy scaled down (its disc would be 20 pixels): its body stays whole and
    a short spike thinner than the disc is still left to the model."""
    rgb = np.full((200, 260, 3), 20, np.uint8)
    yy, xx = np.mgrid[:200, :260]
    rgb[(yy - 100) ** 2 + (xx - 100) ** 2 <= 40**2] = 255
    rgb[96:105, 100:190] = 255  # a spike 9 pixels thick, ending 50 pixels beyond the disc
    mask = light_mask(rgb, 0.1)
    assert (mask[(yy - 100) ** 2 + (xx - 100) ** 2 <= 37**2] == 1).all()
    assert mask[100, 160:190].max() == 0 and light_cores(rgb)[100, 160:190].all()


def test_a_picture_clipped_all_over_is_one_whole_core():
    """No pixel outside the core: its inscribed radius is unmeasurable (the distance transform returns a huge one),
    and the mask is simply whole."""
    for size in ((7, 5), (300, 400)):
        assert (light_mask(np.full((*size, 3), 255, np.uint8), 0.4) == 1).all()


def test_a_small_lamp_keeps_its_spikes():
    """Under about 12 pixels across a lamp's spikes cannot be told from its corners: the whole core is kept."""
    rgb = np.full((40, 40, 3), 20, np.uint8)
    rgb[17:22, 17:22] = 255  # a lamp 5 pixels across
    rgb[18:21, 22:30] = 255  # and a spike 3 pixels thick
    assert (light_mask(rgb)[light_cores(rgb)] == 1).all()


def test_each_lamp_gets_an_edge_by_its_own_size():
    """A small lamp keeps its narrow edge beside a large window; a wider ``edge`` widens every fall-off."""
    rgb = _night((64, 200))
    alone = light_mask(rgb)
    rgb[10:54, 120:190] = 255  # a large lit window, far from the lamp
    both = light_mask(rgb)
    assert np.array_equal(both[:, :100], alone[:, :100])  # the lamp's edge does not follow the window's size
    assert both[30, 190 + 5] > 0 and both[30, 117] > 0.5  # the window's own edge: 10% of its 63-pixel diameter
    wide = light_mask(rgb, 1.0)  # the lamp (10 pixels across): 10 pixels; the window: 63
    assert wide[24, 38 + 6] > both[24, 38 + 6] == 0 and wide[30, 120 - 20] > 0 == both[30, 120 - 20]
    steps = max(np.abs(np.diff(wide, axis=0)).max(), np.abs(np.diff(wide, axis=1)).max())
    assert steps <= 1.5 / 4 + 1e-6  # no step where the nearest light changes


def test_a_lit_strip_gets_an_edge_by_its_width_not_its_length():
    """A neon tube 3 pixels wide and 1,000 long is no lamp 62 pixels across: its size is at most four times its
    thickness (about 4 pixels), so its edge at 0.4 is about 6 pixels, not 25."""
    rgb = np.full((120, 1200, 3), 20, np.uint8)
    rgb[60:63, 100:1100] = 255
    column = light_mask(rgb, 0.4)[:, 600]
    assert 3 + 2 * 4 < (column > 0).sum() <= 3 + 2 * 7


def test_a_larger_photo_gets_a_proportionally_wider_least_edge():
    """On a photo twice the working size a small lamp's edge is at least 8 pixels, the 4 of its working copy."""
    rgb = np.full((64, 2048, 3), 20, np.uint8)
    rgb[28:38, 1000:1010] = 255  # 10 pixels across: an edge of 1 at 0.1, so the least one counts
    row = light_mask(rgb)[32]
    assert row[1009 + 6] > 0 and row[1009 + 8] == 0
    assert light_mask(rgb[:, :1024])[32, 1009 + 4] == 0  # at 1,024 pixels: 4


def test_mask_has_no_step_at_the_core_edge():
    """A step where the core meets its fall-off shows as a ring between the photo's core and the model's output."""
    mask = light_mask(_night())
    steps = np.maximum(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert 0 < steps <= 1.5 / 4 + 1e-6
    assert mask[24, 38] == 1 and 0.8 < mask[24, 39] < 1  # the core's last column, then the first beyond it


def test_keep_lights_restores_cores_and_leaves_the_rest():
    rgb = _night()
    dimmed = torch.full((3, *rgb.shape[:2]), 0.05)  # a model that greyed the lamp and darkened everything
    kept = keep_lights(rgb, from_uint8(rgb, torch.device("cpu")), dimmed)
    assert torch.allclose(kept[:, 21:28, 31:38], torch.ones(3, 7, 7))
    assert torch.equal(kept[:, 60:, :20], dimmed[:, 60:, :20])
    before = (dimmed.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    after = (kept.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert core_brightness_ratio(rgb, before) < 0.1
    assert core_brightness_ratio(rgb, after) == 1.0
    assert np.isnan(core_brightness_ratio(np.zeros((4, 4, 3), np.uint8), before[:4, :4]))


def test_near_lights_is_whole_up_to_half_the_reach_and_nothing_beyond_it():
    rgb = _night((64, 200))  # long side 200: a reach of 0.2 is 40 pixels, whole up to 20
    weight, distance = near_lights(rgb, 0.2), distance_to(light_cores(rgb))
    assert (weight[distance <= 20] == 1).all() and (weight[distance >= 40] == 0).all()
    between = (distance > 21) & (distance < 39)
    assert ((weight[between] > 0) & (weight[between] < 1)).all()
    assert weight[24, 60] > weight[24, 70] > weight[24, 75]  # falling with the distance along a row
    assert weight[24, 38 + 21] > 0.99 and weight[24, 38 + 39] < 0.01  # smooth: flat at both ends of the fall-off
    assert not near_lights(np.full((8, 8, 3), 20, np.uint8), 0.2).any()  # no lights: no change anywhere
    tiny = near_lights(rgb, 1e-320)  # a reach under a pixel is a pixel: the cores, never NaN (black lamps)
    assert np.isfinite(tiny).all() and (tiny[light_cores(rgb)] == 1).all() and tiny.sum() < 2 * light_cores(rgb).sum()


def test_only_near_lights_keeps_the_input_far_from_every_light():
    rgb = _night((64, 200))
    image = from_uint8(rgb, torch.device("cpu"))
    restored = image * 0.5  # a model that darkened everything
    kept = only_near_lights(rgb, image, restored, 0.2)
    far = torch.from_numpy(distance_to(light_cores(rgb)) >= 40)
    near = torch.from_numpy(distance_to(light_cores(rgb)) <= 20)
    assert torch.equal(kept[:, far], image[:, far]) and torch.equal(kept[:, near], restored[:, near])
    assert far.any() and near.any()

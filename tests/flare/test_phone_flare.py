"""The options that make flare pairs look like phone photographs at night: more photographs, phone flare (lamps,
streaks, glow) and the night camera; each changes what it should and nothing else."""

import cv2
import numpy as np
import pytest

from utils.flare import bank as psf_bank
from utils.flare import night, phone, scenes
from utils.flare.composite import PairOptions, synthesize
from utils.flare.data_settings import FlareDataSettings
from utils.flare.light_sources import Light, Lights, lamp
from utils.flare.masks import LUMA
from utils.flare.pairs import FlareJob, SceneSettings, make_pair
from utils.flare.spectrum import temperature_rgb

WHITE = np.ones(3, np.float32)


@pytest.fixture(scope="module")
def bank():
    return psf_bank.compute_bank(psf_bank.BankSettings(count=2, grid=128, size=64), seed=1)


def _recipe(**changes) -> phone.PhoneFlare:
    base = dict(angles=(0.0, np.pi / 2, np.pi, 3 * np.pi / 2), lengths=(0.8,) * 4, spike_share=0.02, falloff=1.0,
                width=0.7, dispersion=0.0, glow_radius=0.2, glow_share=0.0, glow_wide=0.5)  # fmt: skip
    return phone.PhoneFlare(**{**base, **changes})


def _one_lamp(height, width, cy, cx, colour=WHITE, peak=400.0) -> Lights:
    lights = Lights.empty(height, width)
    lamp(lights, Light(cy, cx, peak, colour), 2.0)
    return lights


def test_streaks_are_long_thin_falling_off_and_centred_on_the_lamp():
    lights = _one_lamp(201, 301, 100, 150)
    rays = phone.spikes(lights, _recipe()) @ LUMA
    diagonal = np.hypot(201, 301)
    row = rays[100, 150:]  # the ray at angle 0, to the right
    assert row[140] > 0 and row[20] > row[60] > row[140]  # reaches the frame's edge, fading with distance
    across = rays[90:111, 150 + 60]  # a cut across that ray, 60 pixels out
    assert across.argmax() == 10 and across[10 + 3] < 0.05 * across[10] and across[10 - 3] < 0.05 * across[10]
    ys, xs = np.nonzero(rays > 0)
    weights = rays[ys, xs]
    assert np.average(ys, weights=weights) == pytest.approx(100, abs=0.5)
    assert np.average(xs, weights=weights) == pytest.approx(150, abs=0.5)
    assert rays[20:80, 20:130].max() == 0  # nothing between the rays
    short = phone.spikes(lights, _recipe(lengths=(0.2,) * 4)) @ LUMA
    assert short[100, 150 + int(0.2 * diagonal) + 6 :].max() == 0 and short[100, 150 + int(0.15 * diagonal)] > 0


def test_only_lamps_cast_streaks():
    lights = _one_lamp(120, 160, 60, 40)
    lights.add(np.full((20, 20), 2.0, np.float32), 50, 110, WHITE)  # a dim, wide window: more energy, no streaks
    assert phone.streak_lights(lights) == [0]


def test_the_glow_ends_at_its_radius():
    lights = _one_lamp(240, 320, 120, 160)
    recipe = _recipe(glow_share=0.05, glow_radius=0.25)
    glow = phone.glow(lights.emission, recipe) @ LUMA
    radius = 0.25 * np.hypot(240, 320)  # 100 pixels
    factor = max(1, int(radius // phone.GLOW_WORK_RADIUS))
    y, x = np.indices(glow.shape)
    r = np.hypot(y - 120, x - 160)
    assert glow[r > radius + 2 * factor].max() == 0
    assert glow[(r > 0.45 * radius) & (r < 0.55 * radius)].min() > 0
    assert glow.sum() == pytest.approx(0.05 * float(lights.energies[0] @ LUMA), rel=0.1)


@pytest.mark.parametrize("kind", ["tail", "sodium", "led"])
def test_a_lamps_colour_shows_in_its_flare(kind):
    colour = phone.lamp_colour(kind, np.random.default_rng(0))
    layer, _ = phone.phone_flare(_one_lamp(120, 160, 60, 80, colour), _recipe(glow_share=0.03))
    total = layer.sum(axis=(0, 1))
    assert np.allclose(total / total.max(), colour / colour.max(), atol=0.01)
    if kind == "tail":
        assert total[1] < 0.1 * total[0] and total[2] < 0.1 * total[0]
    elif kind == "sodium":
        assert total[0] > total[1] > 1.5 * total[2]
    else:
        assert total.min() > 0.6 * total.max()


def test_add_lamps_adds_street_coloured_lamps():
    for seed in range(5):
        lights = Lights.empty(96, 128)
        phone.add_lamps(lights, np.random.default_rng(seed))
        assert 1 <= len(lights.centres) <= 8
        for energy in lights.energies:
            c = energy / energy.max()
            red = np.allclose(c, phone.TAIL_RED, atol=1e-3)
            sodium_or_led = c[0] >= c[1] - 1e-3 and (c[1] >= c[2] - 1e-3 or c.min() > 0.8)
            assert red or sodium_or_led, c


def _scene(height=128, width=512):
    """A textured dark scene with one lamp at its left end: the flare cannot reach the right end's corners."""
    rng = np.random.default_rng(3)
    scene = (0.02 + 0.02 * rng.random((height, width, 3))).astype(np.float32)
    return scene, _one_lamp(height, width, 64, 8, temperature_rgb(2000))


def _jpeg_reach(flare: np.ndarray) -> np.ndarray:
    """Where the flare can change a JPEG: its 16x16 blocks (4:2:0) and, through the chroma's upsampling, their
    neighbours."""
    height, width = flare.shape[:2]
    blocks = (flare.max(axis=2) > 0).reshape(height // 16, 16, width // 16, 16).any(axis=(1, 3)).astype(np.uint8)
    blocks = cv2.dilate(blocks, np.ones((3, 3), np.uint8))
    return np.kron(blocks, np.ones((16, 16), np.uint8)) > 0


def test_night_keeps_input_and_target_identical_outside_the_flare(bank):
    scene, lights = _scene()
    look = night.draw_night_look(np.random.default_rng(5))
    options = PairOptions(keep_layers=True, night=look)
    pair = synthesize(scene, lights, bank, 2.2, np.random.default_rng(1), options)
    reach = _jpeg_reach(pair.flare)
    assert (~reach).sum() > 2000  # a region the flare does not reach, even through the JPEG's blocks
    assert np.array_equal(pair.input[~reach], pair.target[~reach])
    assert not np.array_equal(pair.input[reach], pair.target[reach])
    plain = synthesize(scene, lights, bank, 2.2, np.random.default_rng(1), PairOptions())
    assert not np.array_equal(plain.input[~reach], plain.target[~reach])  # today: noise on the input alone
    assert np.abs(pair.target.astype(int) - plain.target).mean() > 2  # exposure, cast, noise and JPEG changed it


def test_night_noise_is_one_field_of_each_images_signal():
    look = night.NightLook(np.ones(3, np.float32), a=1e-3, b=1e-5, noise_seed=4, quality=90)
    dark = np.full((40, 40, 3), 0.01, np.float32)
    bright = dark.copy()
    bright[:, 20:] = 0.5
    noisy_bright, noisy_dark = night.shared_noise([bright, dark], look)
    assert np.array_equal(noisy_bright[:, :20], noisy_dark[:, :20])
    ratio = (noisy_bright - bright)[:, 20:].std() / (noisy_dark - dark)[:, 20:].std()
    assert ratio == pytest.approx(np.sqrt((0.5e-3 + 1e-5) / (1e-5 + 1e-5)), rel=0.01)  # shot noise grows with signal


def test_each_option_changes_only_what_it_adds(bank):
    settings = SceneSettings(7, 96, 128)
    plain, _ = make_pair(FlareJob(settings, bank), "train", 1)
    flared, _ = make_pair(FlareJob(settings, bank, phone_flare=True), "train", 1)
    assert np.array_equal(flared.target, plain.target) and not np.array_equal(flared.input, plain.input)
    assert flared.input.mean() > plain.input.mean()  # light added
    lamps, _ = make_pair(FlareJob(SceneSettings(7, 96, 128, phone_lamps=True), bank), "train", 1)
    assert (lamps.target.astype(int) >= plain.target).all() and (lamps.target > plain.target).any()
    for index in range(6):  # more photographs: a pair that draws a procedural scene stays the same
        wide, source = make_pair(FlareJob(SceneSettings(7, 96, 128, more_photos=True), bank), "test", index)
        if source.kind == "procedural":
            assert np.array_equal(wide.input, make_pair(FlareJob(settings, bank), "test", index)[0].input)


def test_more_photographs_load_and_each_is_in_one_split():
    assert not set(scenes.MORE_PHOTOS) & set(scenes.PHOTOS)
    train, test = scenes.photo_names("train", True), scenes.photo_names("test", True)
    assert not set(train) & set(test) and set(train) | set(test) == set(scenes.PHOTOS) | set(scenes.MORE_PHOTOS)
    assert scenes.photo_names("train") == [n for n, (s, _) in scenes.PHOTOS.items() if s == "train"]
    for name, (split, licence) in scenes.MORE_PHOTOS.items():
        image = scenes.load_photo(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) >= 400
        assert np.abs(image[..., 0].astype(int) - image[..., 2]).mean() > 3 and licence  # in colour
        picked = {scenes.pick_source(split, np.random.default_rng([9, k]), None, True).name for k in range(300)}
        assert name in picked and not picked & set(test if split == "train" else train)
    plain = {scenes.pick_source("train", np.random.default_rng([9, k])).name for k in range(300)}
    assert not plain & set(scenes.MORE_PHOTOS)


def test_the_settings_are_off_by_default():
    settings = FlareDataSettings()
    assert not (settings.more_photos or settings.phone_flare or settings.night)

"""The optical flare generator: physics of the PSFs, compositing, scenes and the bank cache (the command: test_flare_data.py)."""

import numpy as np
import pytest

from utils.flare import bank as psf_bank
from utils.flare import composite, masks, procedural, psf, scenes
from utils.flare.light_sources import Light, Lights, lamp
from utils.flare.pairs import FlareJob, SceneSettings, flare_free_count, is_flare_free, make_pair
from utils.flare.spectrum import channel_responses, temperature_rgb, wavelengths

TINY_BANK = psf_bank.BankSettings(count=3, grid=128, size=64)


@pytest.fixture(scope="module")
def bank():
    return psf_bank.compute_bank(psf_bank.BankSettings(count=3, grid=256, size=96), seed=1)


def _clean_disc(grid=256, radius=32.0) -> psf.Aperture:
    return psf.Aperture(psf.aperture_mask(grid, radius), radius, 0, 0.0)


def _radial_profile(image: np.ndarray) -> np.ndarray:
    c = image.shape[0] // 2  # fftshift puts the zero frequency at (grid/2, grid/2)
    y, x = np.indices(image.shape)
    r = np.rint(np.hypot(y - c, x - c)).astype(int)
    return np.bincount(r.ravel(), image.ravel()) / np.maximum(np.bincount(r.ravel()), 1)


def _first_dark_ring(image: np.ndarray) -> float:
    """Radius (pixels) of the first minimum of the radial profile."""
    profile = _radial_profile(image)
    k = int(
        np.argmax((profile[1:-1] < profile[:-2]) & (profile[1:-1] <= profile[2:]) & (profile[1:-1] < 0.05 * profile[0]))
    )
    return float(k + 1)


# ---------------------------------------------------------------- physics


def test_spectrum_and_light_colours():
    lam = wavelengths(25)
    assert lam[0] == 380 and lam[-1] == 740 and len(lam) >= 16
    weights = channel_responses(lam)
    assert np.allclose(weights.sum(axis=0), 1)
    assert lam[np.argmax(weights[:, 0])] > lam[np.argmax(weights[:, 2])]  # red peaks at longer wavelengths
    sodium, daylight, blue_sky = temperature_rgb(2000), temperature_rgb(6500), temperature_rgb(12000)
    assert sodium[0] > sodium[1] > sodium[2]
    assert np.allclose(daylight, 1, atol=1e-6)
    assert blue_sky[2] > blue_sky[0]


def test_every_psf_sums_to_one(bank):
    for i in range(len(bank)):
        p = bank.psf(i)
        assert p.shape == (96, 96, 3) and p.min() >= 0
        assert np.allclose(p.sum(axis=(0, 1)), 1, atol=1e-5)
    rgb = psf.spectral_psf(_clean_disc(128, 16), wavelengths(16))
    assert np.allclose(rgb.sum(axis=(0, 1)), 1, atol=1e-5)
    assert np.isclose(psf.monochromatic_psf(_clean_disc(128, 16), 500.0).sum(), 1, atol=1e-5)


def test_airy_pattern_first_dark_ring_grows_with_wavelength():
    aperture = _clean_disc(512, 32.0)
    rings = {lam: _first_dark_ring(psf.monochromatic_psf(aperture, lam)) for lam in (450.0, 540.0, 650.0)}
    for lam, r in rings.items():  # Airy: 1.22 * grid / (2 * radius) pixels at 540 nm, scaled by lambda / 540 nm
        assert r == pytest.approx(1.22 * 512 / 64 * lam / 540, abs=0.8), rings
    assert rings[450.0] < rings[540.0] < rings[650.0]
    rgb = psf.spectral_psf(_clean_disc(256, 32.0), wavelengths(25))
    y, x = np.indices(rgb.shape[:2])
    r = np.hypot(y - 128, x - 128)
    within = [rgb[..., ch][r < 4].sum() for ch in range(3)]
    assert within[0] < within[1] < within[2]  # red spreads widest, blue least


def test_straight_scratch_makes_a_perpendicular_streak():
    clean = _clean_disc(256, 32.0)
    scratched = _clean_disc(256, 32.0)
    marks = psf.Blemishes.none(scratched.amplitude.shape)
    marks.add_scratch(np.array([[96.0, 130.0], [160.0, 130.0]]), 255)  # horizontal, across the pupil, opaque
    marks.darken(scratched.amplitude)
    y, x = np.indices((256, 256)) - 128
    far = np.hypot(y, x) > 20
    vertical, horizontal = far & (np.abs(x) <= 2), far & (np.abs(y) <= 2)

    def streakiness(aperture):
        p = psf.monochromatic_psf(aperture, 540.0)
        return p[vertical].sum() / p[horizontal].sum()

    assert streakiness(clean) == pytest.approx(1, rel=0.05)
    assert streakiness(scratched) > 3 * streakiness(clean)


def test_streak_kernel_finds_streaks_not_the_round_halo():
    y, x = np.indices((101, 101)) - 50
    r = np.hypot(y, x)
    halo = 1 / (1 + r**2)
    line = np.where((np.abs(x) <= 1) & (r > 8), 0.5 / (1 + np.abs(y)), 0)
    kernel = np.repeat((halo + line)[..., None], 3, axis=2).astype(np.float32)
    streak = masks.streak_kernel(kernel)
    assert streak[np.abs(x) > 3].sum() == 0
    assert streak[(np.abs(x) <= 1) & (r > 8)].sum() > 0.5 * line.sum()


# ---------------------------------------------------------------- compositing


def _dark_scene(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.0, 0.05, (h, w, 3))).astype(np.float32)


def test_zero_emission_input_equals_target_up_to_noise(bank):
    scene = _dark_scene()
    lights = Lights.empty(96, 128)
    quiet = composite.synthesize(
        scene, lights, bank, 2.0, np.random.default_rng(0), composite.PairOptions(masks=True, noise=False)
    )
    assert np.array_equal(quiet.input, quiet.target)
    assert not quiet.glare.any() and not quiet.streak.any()
    noisy = composite.synthesize(scene, lights, bank, 2.0, np.random.default_rng(0))
    diff = noisy.input.astype(int) - noisy.target
    assert abs(diff.mean()) < 0.5 and np.abs(diff).mean() < 4


def test_scattering_stays_within_the_kernels_reach(bank, monkeypatch):
    """No global cast: beyond the kernel's reach the input equals the target (ghosts, which lie elsewhere on
    purpose, left out here)."""
    monkeypatch.setattr(composite, "render_ghosts", lambda shape, *a, **k: np.zeros((*shape, 3), np.float32))
    lights = Lights.empty(96, 512)
    lamp(lights, Light(48, 20, 300.0, np.ones(3, np.float32)), 3)
    reach = int(20 + composite.EXTENT_RANGE[1] * 512 / 2 + 2)
    for seed in range(3):
        pair = composite.synthesize(
            _dark_scene(96, 512), lights, bank, 2.2, np.random.default_rng(seed), composite.PairOptions(noise=False)
        )
        assert np.array_equal(pair.input[:, reach:], pair.target[:, reach:])
        assert not np.array_equal(pair.input[:, :reach], pair.target[:, :reach])


def test_flare_is_additive_in_linear_light(bank):
    rng = np.random.default_rng(3)
    a, b = (rng.uniform(0, 50, (40, 60, 3)) * (rng.random((40, 60, 1)) < 0.01)).astype(np.float32), None
    b = np.roll(a, (7, 11), axis=(0, 1)) * 0.5
    kernel = composite.make_kernel(bank, 31, np.random.default_rng(0)).rgb
    both = composite.convolve(a + b, kernel)
    assert np.allclose(both, composite.convolve(a, kernel) + composite.convolve(b, kernel), atol=1e-4 * both.max())
    lights = Lights.empty(96, 128)
    lamp(lights, Light(40, 50, 200.0, temperature_rgb(2700)), 4)
    scene = _dark_scene()
    pair = composite.synthesize(
        scene, lights, bank, 2.0, np.random.default_rng(1), composite.PairOptions(noise=False, keep_layers=True)
    )
    assert pair.flare.min() >= 0 and pair.flare.max() > 0.01
    assert np.array_equal(pair.input, composite.encode(scene + lights.emission + pair.flare, 2.0))
    assert np.array_equal(pair.target, composite.encode(scene + lights.emission, 2.0))


def test_convolution_is_linear_not_circular():
    image = np.zeros((50, 70, 1), np.float32)
    image[25, 2] = 1.0  # by the left edge: nothing may wrap to the right edge
    kernel = np.ones((41, 41, 1), np.float32) / 41**2
    out = composite.convolve(image, kernel)[..., 0]
    assert out[:, 30:].max() < 1e-6 * out.max() and out[25, 2] == pytest.approx(1 / 41**2, rel=1e-4)


def test_pair_masks_and_ghosts(bank):
    for seed in range(4):
        pair, _ = make_pair(FlareJob(SceneSettings(7, 96, 128), bank, masks=True), "train", seed)
        assert pair.input.shape == (96, 128, 3) and pair.input.dtype == np.uint8
        assert set(np.unique(pair.glare)) <= {0, 255} and set(np.unique(pair.streak)) <= {0, 255}
        assert not (pair.streak & ~pair.glare).any()
        assert pair.glare.any() and 5 < pair.psnr < 45
    lights = Lights.empty(200, 200)
    lamp(lights, Light(40, 40, 500.0, np.ones(3, np.float32)), 3)
    ghosts = composite.render_ghosts((200, 200), lights, 1.0, bank.aperture(0), 0.0, np.random.default_rng(2))
    assert ghosts.sum() > 0
    ys, xs = np.nonzero(ghosts.sum(axis=2) > ghosts.max() * 0.05)
    offsets = np.stack([ys - 99.5, xs - 99.5], axis=1)  # on the line through the light and the centre
    assert np.abs(offsets[:, 0] - offsets[:, 1]).max() < 0.35 * 200


def test_flare_free_pairs_keep_the_lamps_and_leave_the_other_pairs_alone(bank):
    """A flare-free training pair is its target plus sensor noise, lamps included; a share never changes a flared
    pair, and test pairs always have flare."""
    assert [i for i in range(12) if is_flare_free(i, 0.25)] == [3, 7, 11]
    assert sum(is_flare_free(i, 0.3) for i in range(10)) == 3 and not any(is_flare_free(i, 0.0) for i in range(50))
    assert sum(is_flare_free(i, 0.29) for i in range(100)) == flare_free_count(100, 0.29) == 29  # 100 * 0.29 < 29
    scenes = SceneSettings(7, 96, 128)
    flared, _ = make_pair(FlareJob(scenes, bank, masks=True), "train", 3)
    free, _ = make_pair(FlareJob(scenes, bank, masks=True, clean_share=0.25), "train", 3)
    assert np.array_equal(free.target, flared.target) and free.target.max() == 255  # the same scene and lamps
    diff = free.input.astype(int) - free.target
    assert abs(diff.mean()) < 0.5 and np.abs(diff).mean() < 4 and not free.glare.any()
    assert flared.psnr < free.psnr - 5
    kept, _ = make_pair(FlareJob(scenes, bank, clean_share=0.25), "train", 2)
    assert np.array_equal(kept.input, make_pair(FlareJob(scenes, bank), "train", 2)[0].input)
    test, _ = make_pair(FlareJob(scenes, bank, clean_share=0.25), "test", 3)
    assert np.array_equal(test.input, make_pair(FlareJob(scenes, bank), "test", 3)[0].input)


# ---------------------------------------------------------------- scenes


def test_train_and_test_scenes_never_shared(tmp_path):
    train = {n for n, (split, _) in scenes.PHOTOS.items() if split == "train"}
    test = {n for n, (split, _) in scenes.PHOTOS.items() if split == "test"}
    assert train and test and not train & test
    picked = {split: {scenes.pick_source(split, np.random.default_rng([0, k, i])) for i in range(60)}
              for k, split in enumerate(("train", "test"))}  # fmt: skip
    assert {s.name for s in picked["train"] if s.kind == "photo"} <= train
    assert {s.name for s in picked["test"] if s.kind == "photo"} <= test
    paths = [tmp_path / f"{i}.png" for i in range(7)]
    split = scenes.split_user_images(paths, 10, 3, seed=0)
    assert split["train"] and split["test"] and not set(split["train"]) & set(split["test"])
    assert sorted(split["train"] + split["test"]) == sorted(paths)


def test_procedural_scenes_are_night_scenes_with_lights():
    for kind in procedural.PROCEDURAL_KINDS:
        scene, lights = procedural.procedural_scene(kind, 120, 160, np.random.default_rng(4))
        assert scene.shape == (120, 160, 3) and scene.dtype == np.float32
        assert scene.min() >= 0 and np.median(scene) < 0.05  # dark
        assert lights.emission.max() > 1 and len(lights.centres) == len(lights.energies) > 0


# ---------------------------------------------------------------- bank cache


def test_bank_is_cached_by_settings_and_seed(tmp_path, monkeypatch):
    first = psf_bank.load_or_compute(tmp_path, TINY_BANK, seed=5)
    path = psf_bank.cache_path(tmp_path, TINY_BANK, 5)
    assert path.is_file() and path.name.startswith("psf_")
    monkeypatch.setattr(psf_bank, "compute_bank", lambda *a, **k: pytest.fail("the cached bank was computed again"))
    again = psf_bank.load_or_compute(tmp_path, TINY_BANK, seed=5)
    assert np.array_equal(first.roots, again.roots)
    assert psf_bank.cache_path(tmp_path, TINY_BANK, 6) != path
    assert psf_bank.cache_path(tmp_path, psf_bank.BankSettings(count=4, grid=128, size=64), 5) != path
    monkeypatch.undo()
    path.write_bytes(b"damaged")
    assert np.array_equal(psf_bank.load_or_compute(tmp_path, TINY_BANK, seed=5).roots, first.roots)

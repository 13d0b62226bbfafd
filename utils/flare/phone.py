"""Phone flare (``--phone_flare``): more lamps of street colours, long thin streaks and large soft glows.

What a phone's night photograph shows around its lamps and the PSF bank's flare lacks:

- *Lamps* (``add_lamps``): 1-4 more per picture (3-8 are painted already), of the colours of a street at night: sodium
  orange (1900-2300 K), LED white (4000-6500 K), pairs of red tail lights and of white headlights.
- *Streaks* (``spikes``): from each of the brightest lamps (``streak_lights``), 2-8 straight rays, one set of
  directions per picture (the same glass makes them all), spread evenly with a little jitter.
  Each ray is thin (a Gaussian cross-section of 0.5-1.2 pixels), runs for 30-90 % of the image's
  diagonal and falls off with distance as a power law (exponent 0.7-1.6) that tapers to zero at its
  end, red a little longer than blue (diffraction grows with wavelength). All rays of a light carry
  0.3-3 % of its energy.
- *Glow* (``glow``): veiling glare, a soft halo around every light: two Gaussians (widths a third
  and an eighth of the radius), tapered to zero at the radius, which is 4 % to a third of the
  image's diagonal; 0.5-5 % of each light's energy.

A pair's recipe (``PhoneFlare``) is drawn from its own random stream, so that turning the option on
adds this flare to the pair and changes nothing else of it. The layer is zero beyond each ray's end and
each glow's radius, and trimmed of the FFT's round-off there.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.flare.fftconv import convolve
from utils.flare.light_sources import Light, Lights, lamp, lamp_intensity
from utils.flare.masks import LUMA
from utils.flare.night import log_uniform
from utils.flare.spectrum import temperature_rgb

SODIUM_K, LED_K = (1900, 2300), (4000, 6500)
TAIL_RED = np.array([1.0, 0.06, 0.04], np.float32)
LAMP_KINDS = ("sodium", "led", "tail", "head")
LAMP_ODDS = (0.35, 0.3, 0.2, 0.15)
MAX_GLOW_RADIUS = 1 / 3  # of the image's diagonal
GLOW_WORK_RADIUS = 48  # pixels: the glow is convolved at a scale that makes its radius about this
SPIKE_LIGHTS = 8  # the brightest lamps that cast streaks
SPIKE_PEAK = 8.0  # a light casts streaks if it is at least this bright at its centre (lamps: windows are dimmer)
TRIM = 1e-6  # linear: the FFT's round-off, cut from the glow


@dataclass(frozen=True)
class PhoneFlare:
    """One picture's streaks and glow; lengths and the radius over the image's diagonal."""

    angles: tuple[float, ...]  # radians, one per ray
    lengths: tuple[float, ...]
    spike_share: float  # of each light's energy, in all its rays together
    falloff: float  # the power law's exponent
    width: float  # a ray's Gaussian sigma, pixels
    dispersion: float  # red rays this much longer, blue this much shorter
    glow_radius: float
    glow_share: float
    glow_wide: float  # the share of the wider Gaussian in the glow


def draw_phone_flare(rng: np.random.Generator) -> PhoneFlare:
    """A random recipe for one picture."""
    count = int(rng.integers(2, 9))
    start = rng.uniform(0, 2 * np.pi)
    angles = tuple(float(start + 2 * np.pi * k / count + rng.normal(0, 0.04)) for k in range(count))
    lengths = tuple(float(v) for v in rng.uniform(0.3, 0.9, count))
    return PhoneFlare(angles, lengths, log_uniform(rng, 0.003, 0.03), float(rng.uniform(0.7, 1.6)),
                      float(rng.uniform(0.5, 1.2)), float(rng.uniform(0, 0.1)),
                      log_uniform(rng, 0.04, MAX_GLOW_RADIUS), log_uniform(rng, 0.005, 0.05),
                      float(rng.uniform(0.3, 0.8)))  # fmt: skip


def lamp_colour(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Linear RGB (max channel 1) of a lamp of ``kind``: sodium, LED white, tail light or headlight."""
    if kind == "tail":
        return TAIL_RED.copy()
    low, high = SODIUM_K if kind == "sodium" else LED_K
    return temperature_rgb(float(rng.uniform(low, high)))


def add_lamps(lights: Lights, rng: np.random.Generator) -> None:
    """1-4 more lamps in ``lights``: street lamps (sodium or LED) and pairs of car lights (red tail, white head)."""
    height, width = lights.emission.shape[:2]
    unit = min(height, width)
    for _ in range(int(rng.integers(1, 5))):
        kind = LAMP_KINDS[int(rng.choice(len(LAMP_KINDS), p=LAMP_ODDS))]
        cy, cx = rng.uniform(0.05, 0.85) * height, rng.uniform(0.04, 0.96) * width
        colour, peak = lamp_colour(kind, rng), lamp_intensity(rng)
        if kind in ("tail", "head"):
            gap, radius = unit * rng.uniform(0.02, 0.08), max(1.0, unit * rng.uniform(0.002, 0.006))
            for dx in (-gap, gap):
                lamp(lights, Light(cy, cx + dx, peak * (0.3 if kind == "tail" else 1.0), colour), radius)
        else:
            lamp(lights, Light(cy, cx, peak, colour), max(1.0, unit * rng.uniform(0.003, 0.012)))


def ray_profile(t: np.ndarray, length: float, falloff: float, scale: float) -> np.ndarray:
    """Energy per pixel of length at distances ``t`` along a ray, summing to 1 over ``t`` (step 0.5): a power law
    from a knee at 1 % of the ray's length, tapered to zero at ``length * scale``."""
    end = length * scale
    knee = max(2.0, 0.01 * length)
    w = (1 + t / knee) ** -falloff * np.clip(1 - (t / end) ** 2, 0, None) ** 2
    return w / max(float(w.sum()) * 0.5, 1e-20)


def spikes(lights: Lights, recipe: PhoneFlare) -> np.ndarray:
    """(H, W, 3) float32: the rays of the ``SPIKE_LIGHTS`` brightest lights, each ray splatted along its line
    (bilinear, half-pixel steps) and blurred to its width."""
    height, width = lights.emission.shape[:2]
    diagonal = float(np.hypot(height, width))
    order = streak_lights(lights)
    scales = (1 + recipe.dispersion, 1.0, 1 - recipe.dispersion)
    index, weight = [], [[], [], []]
    for k in order:
        cy, cx = lights.centres[k]
        energy = lights.energies[k] * (recipe.spike_share / len(recipe.angles))
        for angle, share in zip(recipe.angles, recipe.lengths):
            length = share * diagonal
            t = np.arange(1.0, length * scales[0], 0.5)
            y, x = cy + t * np.sin(angle), cx + t * np.cos(angle)
            cells, parts = _bilinear(y, x, height, width)
            index.append(cells)
            for c in range(3):
                w = ray_profile(t, length, recipe.falloff, scales[c]) * 0.5 * float(energy[c])
                weight[c].append((parts * w[None]).ravel())
    out = np.zeros((height, width, 3), np.float32)
    if not index:
        return out
    cells = np.concatenate([i.ravel() for i in index])
    inside = cells >= 0
    for c in range(3):
        total = np.bincount(cells[inside], np.concatenate(weight[c])[inside], minlength=height * width)
        out[..., c] = total.reshape(height, width)
    return cv2.GaussianBlur(out, (0, 0), recipe.width)


def streak_lights(lights: Lights) -> list[int]:
    """The ``SPIKE_LIGHTS`` lights of most energy among the compact bright ones (at least ``SPIKE_PEAK`` at their
    centre): lamps cast thin rays; a window or a sign, wide and dim, would smear them into bands, left out."""
    height, width = lights.emission.shape[:2]
    bright = []
    for k, (cy, cx) in enumerate(lights.centres):
        y, x = min(max(int(round(cy)), 0), height - 1), min(max(int(round(cx)), 0), width - 1)
        if lights.emission[y, x].max() >= SPIKE_PEAK:
            bright.append(k)
    return sorted(bright, key=lambda k: -float(lights.energies[k] @ LUMA))[:SPIKE_LIGHTS]


def _bilinear(y: np.ndarray, x: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The four pixels around each point (flat indices, -1 outside the image) and their bilinear weights, (4, N)."""
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    fy, fx = y - y0, x - x0
    cells, parts = [], []
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < height) & (xx >= 0) & (xx < width)
        cells.append(np.where(ok, yy * width + xx, -1))
        parts.append(w)
    return np.stack(cells), np.stack(parts)


def glow_kernel(radius: float, wide: float) -> np.ndarray:
    """(K, K) float32 summing to 1, K odd: two Gaussians (sigma a third and an eighth of ``radius``, ``wide`` of the
    first), tapered to zero at ``radius``."""
    half = max(1, int(np.ceil(radius)))
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    r2 = (x * x + y * y) / max(radius, 1e-6) ** 2
    kernel = wide * np.exp(-4.5 * r2) + (1 - wide) * np.exp(-32 * r2)
    kernel *= np.clip(1 - r2, 0, None) ** 2
    return (kernel / kernel.sum()).astype(np.float32)


def glow(emission: np.ndarray, recipe: PhoneFlare) -> np.ndarray:
    """(H, W, 3) float32: the veiling glare of ``emission``, convolved at a smaller scale (the glow is smooth) in
    double precision, so that the round-off beyond its radius stays below ``TRIM``."""
    height, width = emission.shape[:2]
    radius = recipe.glow_radius * float(np.hypot(height, width))
    factor = max(1, int(radius // GLOW_WORK_RADIUS))
    work = emission
    if factor > 1:
        work = cv2.resize(emission, (-(-width // factor), -(-height // factor)), interpolation=cv2.INTER_AREA)
    kernel = glow_kernel(radius / factor, recipe.glow_wide)
    out = convolve(work.astype(np.float64), kernel) * np.float32(recipe.glow_share)
    if factor > 1:
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out - TRIM, 0, None)


def phone_flare(lights: Lights, recipe: PhoneFlare) -> tuple[np.ndarray, np.ndarray]:
    """(layer, streak): the linear phone flare of ``lights`` (H, W, 3), and its streaks alone in luminance (H, W)."""
    rays = spikes(lights, recipe)
    return rays + glow(lights.emission, recipe), rays @ LUMA

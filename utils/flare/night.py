"""The night camera (``--night``): what a phone does to the whole picture, the same to input and target.

A phone at night meters the scene, sets a white balance that rarely matches the street's light,
pushes the gain up (so the picture is noisy) and saves a JPEG. Done to the input only, each of
these would teach a model to change pixels far from any light: to brighten or recolour them, to
denoise them or to remove blocking. So every step is the same for both images of a pair:

- *Exposure and white balance*: one gain per channel, in linear light, on scene, lights and
  flare alike: an exposure (log-uniform 0.5-3) times a colour cast from the light the camera
  balanced wrongly for (sodium orange 1900-2300 K, warm 2700-3500 K, or LED white 4000-6500 K,
  partly corrected, at constant luminance).
- *Sensor noise*: one standard-normal field ``z`` per pair, and each image gets
  ``sqrt(a * signal + b) * z`` of its own signal (shot and read noise). The target keeps the noise:
  where the flare is zero both images get exactly the same noise, so nothing far from the
  lights differs; under the flare the input's noise is a little stronger, as the flare's photons
  add their own shot noise.
- *JPEG*: both 8-bit images go through one JPEG round trip at the pair's quality (55-95). JPEG
  codes each 16x16 block (8x8 and subsampled chroma) on its own, so blocks that the flare does not
  reach come out the same in both; the target keeps the artefacts that a phone's photograph has.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.flare.masks import LUMA
from utils.flare.spectrum import temperature_rgb

EXPOSURE_RANGE = (0.5, 3.0)
CAST_KELVIN = ((1900, 2300), (2700, 3500), (4000, 6500))  # sodium, warm, LED white
NOISE_A = (5e-5, 1e-3)  # shot noise: variance per unit of signal
NOISE_B = (5e-7, 1e-5)  # read noise: variance
JPEG_QUALITY = (55, 95)


@dataclass(frozen=True)
class NightLook:
    """One pair's camera: channel gains (exposure times cast), noise variances ``a * signal + b``, the seed of its
    noise field and its JPEG quality."""

    gains: np.ndarray  # (3,) float32
    a: float
    b: float
    noise_seed: int
    quality: int


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_night_look(rng: np.random.Generator) -> NightLook:
    """A random camera for one pair, from its own random stream."""
    exposure = log_uniform(rng, *EXPOSURE_RANGE)
    low, high = CAST_KELVIN[int(rng.integers(len(CAST_KELVIN)))]
    cast = temperature_rgb(float(rng.uniform(low, high)))
    cast = 1 + rng.uniform(0.3, 0.9) * (cast - 1)  # the camera's auto white balance corrects part of it
    gains = (exposure * cast / float(cast @ LUMA)).astype(np.float32)
    a, b = log_uniform(rng, *NOISE_A), log_uniform(rng, *NOISE_B)
    return NightLook(gains, a, b, int(rng.integers(2**31)), int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))


def shared_noise(images: list[np.ndarray], look: NightLook) -> list[np.ndarray]:
    """``images`` (linear, same shape) each with shot and read noise of its own signal from one shared normal field:
    where two images are equal, so are their noisy versions."""
    z = np.random.default_rng(look.noise_seed).standard_normal(images[0].shape, dtype=np.float32)
    out = []
    for image in images:
        sigma = np.clip(image, 0, 1) * np.float32(look.a) + np.float32(look.b)
        out.append(image + np.sqrt(sigma) * z)
    return out


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """An 8-bit RGB image saved as a JPEG of ``quality`` (4:2:0, as phones save them) and read back."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

"""Masks of where the flare shows: the glare region and the streak region of an input image.

- *Glare*: every pixel whose 8-bit value the flare (scattering, ghosts and veil) raises by at
  least ``VISIBLE`` levels in some channel, judged without sensor noise. Where a light source
  is already clipped the flare changes nothing, so the sources themselves are not in the mask.
- *Streak*: the same test for the streaks alone. A PSF's streak part is what stands out of its
  rotational average: the luminance PSF minus its mean over each ring, kept where it is more
  than three times that mean, outside the core (``streak_kernel``). The lights seen
  through that kernel give the streak layer.

Masks are 8-bit, 255 inside and 0 outside.
"""

from __future__ import annotations

import numpy as np

VISIBLE = 6  # levels of 255
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def radial_mean(image: np.ndarray) -> np.ndarray:
    """The mean of a centred (K, K) image over each ring of whole-pixel radius, spread back to (K, K)."""
    k = image.shape[0]
    y, x = np.indices(image.shape)
    r = np.rint(np.hypot(y - (k - 1) / 2, x - (image.shape[1] - 1) / 2)).astype(np.int64)
    sums = np.bincount(r.ravel(), image.ravel())
    counts = np.bincount(r.ravel())
    return (sums / np.maximum(counts, 1))[r].astype(np.float32)


def streak_kernel(kernel: np.ndarray, ratio: float = 3.0) -> np.ndarray:
    """(K, K) float32: the streaks of an RGB kernel, in luminance; zero in the core (the inner 10 % of the width)."""
    luma = kernel @ LUMA
    mean = radial_mean(luma)
    excess = np.where(luma > ratio * mean, luma - mean, 0).astype(np.float32)
    k = kernel.shape[0]
    y, x = np.ogrid[:k, : kernel.shape[1]]
    excess[np.hypot(y - (k - 1) / 2, x - (kernel.shape[1] - 1) / 2) < 0.05 * k] = 0
    return excess


def visible(base8: np.ndarray, raised8: np.ndarray) -> np.ndarray:
    """(H, W) uint8 mask, 255 where ``raised8`` exceeds ``base8`` by at least VISIBLE levels in some channel."""
    diff = raised8.astype(np.int16) - base8.astype(np.int16)
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return np.where(diff >= VISIBLE, 255, 0).astype(np.uint8)

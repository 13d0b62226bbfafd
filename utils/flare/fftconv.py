"""Linear convolution by FFT, of an image with a centred kernel: the flare's scattering and the phone glow."""

from __future__ import annotations

import numpy as np
import scipy.fft


def odd(n: float) -> int:
    return int(n) // 2 * 2 + 1


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear (not circular) convolution of (H, W, C) ``image`` with a centred (K, K, C) or (K, K) kernel, by FFT;
    returns (H, W, C) float32 (clipped at 0: the FFT's rounding leaves tiny negative values). A float64 image is
    convolved in double precision, kernel included, which keeps the round-off far from its lights near 1e-12."""
    height, width = image.shape[:2]
    k = kernel.shape[0]
    half = k // 2
    shape = (scipy.fft.next_fast_len(max(height + half + 1, k), real=True),
             scipy.fft.next_fast_len(max(width + half + 1, k), real=True))  # fmt: skip
    planes = np.moveaxis(image, 2, 0) if image.ndim == 3 else image[None]
    kern = np.moveaxis(kernel, 2, 0) if kernel.ndim == 3 else kernel[None]
    padded = np.zeros((kern.shape[0], *shape), np.result_type(image.dtype, np.float32))
    padded[:, :k, :k] = kern
    padded = np.roll(padded, (-half, -half), axis=(1, 2))  # the kernel's centre at the origin
    spectrum = scipy.fft.rfft2(planes, s=shape, axes=(1, 2), workers=1)
    spectrum *= scipy.fft.rfft2(padded, axes=(1, 2), workers=1)
    out = scipy.fft.irfft2(spectrum, s=shape, axes=(1, 2), workers=1)[:, :height, :width]
    out = np.moveaxis(out, 0, 2).astype(np.float32)
    return np.clip(out, 0, None, out=out)

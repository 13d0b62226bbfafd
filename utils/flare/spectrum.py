"""The visible spectrum, the camera's three colour responses and the colour of a light of a given temperature.

Wavelengths are sampled evenly from 380 to 740 nm. The sensor's red, green and blue responses are
Gaussians centred near 620, 540 and 460 nm with a width (sigma) of 50 nm; a light's colour is its
spectrum seen through them. The reference wavelength, at which a PSF's FFT grid is taken as it is,
is 540 nm (green).
"""

from __future__ import annotations

import numpy as np

LAMBDA_MIN, LAMBDA_MAX = 380.0, 740.0
LAMBDA_REF = 540.0
CHANNEL_CENTRES = (620.0, 540.0, 460.0)  # red, green, blue
CHANNEL_SIGMA = 50.0


def wavelengths(count: int) -> np.ndarray:
    """``count`` wavelengths (nm) evenly spread over the visible spectrum, ends included."""
    if count < 2:
        raise ValueError("at least two wavelengths are needed")
    return np.linspace(LAMBDA_MIN, LAMBDA_MAX, count)


def channel_responses(lambdas: np.ndarray) -> np.ndarray:
    """(len(lambdas), 3) weights of each wavelength in the red, green and blue channels; each column sums to 1."""
    lam = np.asarray(lambdas, np.float64)[:, None]
    weights = np.exp(-0.5 * ((lam - np.array(CHANNEL_CENTRES)) / CHANNEL_SIGMA) ** 2)
    return weights / weights.sum(axis=0, keepdims=True)


def planck(lambdas_nm: np.ndarray, kelvin: float) -> np.ndarray:
    """Black-body spectral radiance (arbitrary units) at ``lambdas_nm`` for a temperature in kelvin."""
    lam = np.asarray(lambdas_nm, np.float64) * 1e-9
    c2 = 1.4388e-2  # second radiation constant h c / k, in m K
    return 1.0 / (lam**5 * np.expm1(c2 / (lam * kelvin)))


_COLOUR_LAMBDAS = wavelengths(37)
_COLOUR_WEIGHTS = np.exp(-0.5 * ((_COLOUR_LAMBDAS[:, None] - np.array(CHANNEL_CENTRES)) / CHANNEL_SIGMA) ** 2)
_WHITE = planck(_COLOUR_LAMBDAS, 6500.0) @ _COLOUR_WEIGHTS  # white balance: a 6500 K light is grey


def temperature_rgb(kelvin: float) -> np.ndarray:
    """Linear RGB colour (max channel 1) of a black body at ``kelvin``, white-balanced for 6500 K daylight.

    Sodium street lamps look like about 2000 K, tungsten 2700 K, warm LEDs 3000 K, cool LEDs 5000-6500 K.
    """
    rgb = (planck(_COLOUR_LAMBDAS, kelvin) @ _COLOUR_WEIGHTS) / _WHITE
    return (rgb / rgb.max()).astype(np.float32)

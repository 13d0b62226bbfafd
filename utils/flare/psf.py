"""Lens point-spread functions (PSFs) computed from random apertures.

The scattering flare of a lens is the image of a point light through its aperture (Wu et al.,
"How to Train Neural Networks for Flare Removal", ICCV 2021). For one wavelength,

    PSF_lambda = |FFT(pupil * exp(i * phi_lambda))|^2,

where the pupil is the aperture's transmission (a disc or, for three in ten, a 5- to 10-sided
polygon of straight blades, with dark dust specks and thin scratch polylines) and phi the phase:
a random amount of the Zernike defocus term 2 rho^2 - 1 (up to 0.6 waves) and, on most apertures,
a smooth random "smudge" (grease on the glass, 0.02-0.12 waves RMS) that scatters a glow, both
in waves at 540 nm, so bluer light sees more waves. The FFT's frequency step is an angle
proportional to wavelength / pupil pixel pitch, so the pupil is resampled by 540 nm / lambda
before its FFT: every wavelength lands on the same angular grid, magnified by lambda / 540 nm
(red wider than blue), with no resampling of the PSF itself. 25 wavelengths from 380 to 740 nm
(15 nm apart) are summed through the three Gaussian colour responses (``utils.flare.spectrum``),
a flat spectrum; each channel of the result sums to 1. Straight scratches and blade edges
diffract into streaks and spikes perpendicular to them; dust makes a wide halo; the spectral
sum turns speckle into coloured radial streaks and the rings into colour fringes.

Grid size. The pupil is drawn on a 1024 x 1024 FFT grid (``grid``) with a radius of 0.22 of the
grid (jittered by -15/+10 %): its diameter stays under half the grid even magnified for 380 nm,
so the FFT samples the PSF exactly (intensity is the pupil's autocorrelation, at most twice its
width), the Airy core is about 3 grid pixels in radius and the streaks reach about 150 core
radii. One zero-padded 1024-point complex FFT takes about 10 ms, so a PSF of 25 wavelengths
takes 0.5-0.7 s on one core. ``shrink`` then area-shrinks a PSF to the stored size (the core about
one pixel) and tapers it to zero at its inscribed circle (no square corners of halo in an image).
The bank of them, its settings and its cache on disk are in ``utils.flare.bank``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import scipy.fft

from utils.flare.spectrum import LAMBDA_REF, channel_responses

if TYPE_CHECKING:
    from utils.flare.bank import BankSettings

APERTURE_THUMB = 64  # side of the aperture thumbnails the ghosts are drawn from


@dataclass
class Aperture:
    """A pupil's transmission on the FFT grid and the numbers that drew it."""

    amplitude: np.ndarray  # (grid, grid) float32 in [0, 1]
    radius: float  # pixels
    sides: int  # 0 for a disc
    defocus: float  # waves at 540 nm
    smudge: np.ndarray | None = None  # (grid, grid) optical path error in waves at 540 nm, or None


def _aa(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Points in 1/16 pixel, for OpenCV's sub-pixel drawing (shift=4)."""
    return np.round(np.asarray(points) * 16).astype(np.int32)


def polygon(sides: int, radius: float, rotation: float, centre: tuple[float, float]) -> np.ndarray:
    angles = rotation + 2 * np.pi * np.arange(sides) / sides
    return np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)


def aperture_mask(grid: int, radius: float, sides: int = 0, rotation: float = 0.0) -> np.ndarray:
    """(grid, grid) float32 aperture, anti-aliased: a disc (sides=0) or a regular polygon, centred."""
    canvas = _aa((grid, grid))
    c = grid / 2
    if sides == 0:
        cv2.circle(canvas, tuple(_fixed((c, c))), int(round(radius * 16)), 255, -1, cv2.LINE_AA, shift=4)
    else:
        cv2.fillPoly(canvas, [_fixed(polygon(sides, radius, rotation, (c, c)))], 255, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255.0


@dataclass
class Blemishes:
    """Dust specks and scratches on the glass: two uint8 maps of opacity (0-255), drawn anti-aliased, where
    overlapping marks take the later one's opacity; ``darken`` applies both to a pupil."""

    dust: np.ndarray
    scratches: np.ndarray

    @classmethod
    def none(cls, shape: tuple[int, int]) -> Blemishes:
        return cls(_aa(shape), _aa(shape))

    def add_speck(self, centre: tuple[float, float], radius: float, opacity: int) -> None:
        """A round speck of dust at ``centre`` (x, y pixels), at least 1/16 pixel in ``radius``."""
        size = max(1, int(round(16 * radius)))
        cv2.circle(self.dust, tuple(_fixed(centre)), size, opacity, -1, cv2.LINE_AA, shift=4)

    def add_scratch(self, points: np.ndarray | list[tuple[float, float]], opacity: int, width: int = 1) -> None:
        """A scratch along the polyline ``points`` (x, y pixels)."""
        cv2.polylines(self.scratches, [_fixed(points)], False, opacity, width, cv2.LINE_AA, shift=4)

    def darken(self, amplitude: np.ndarray) -> None:
        """Darken ``amplitude`` in place by both maps."""
        amplitude *= (1 - self.dust.astype(np.float32) / 255) * (1 - self.scratches.astype(np.float32) / 255)


def random_aperture(settings: BankSettings, rng: np.random.Generator) -> Aperture:
    """A random pupil: disc or 5-10-sided polygon, dust specks and a few scratch polylines, and a random defocus."""
    grid = settings.grid
    radius = grid * settings.pupil_fraction * rng.uniform(0.85, 1.1)
    sides = int(rng.integers(5, 11)) if rng.random() < 0.3 else 0  # a few with straight blades: spikes
    amp = aperture_mask(grid, radius, sides, rng.uniform(0, 2 * np.pi))
    c = grid / 2
    unit = grid / 1024
    marks = Blemishes.none(amp.shape)
    for _ in range(int(np.exp(rng.uniform(np.log(20), np.log(400))))):  # dust: the wide, faint halo
        r, t = radius * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        marks.add_speck(
            (c + r * np.cos(t), c + r * np.sin(t)), unit * rng.uniform(0.5, 3.0), int(rng.uniform(100, 255))
        )
    for _ in range(int(rng.integers(2, 15) if rng.random() < 0.9 else 0)):  # scratches: the streaks
        r, t = radius * np.sqrt(rng.random()) * 0.9, rng.uniform(0, 2 * np.pi)
        heading = rng.uniform(0, np.pi)
        pts = [(c + r * np.cos(t), c + r * np.sin(t))]
        for _ in range(int(rng.integers(1, 4))):
            heading += rng.normal(0, 0.25)
            step = radius * rng.uniform(0.3, 1.0)
            pts.append((pts[-1][0] + step * np.cos(heading), pts[-1][1] + step * np.sin(heading)))
        width = 1 if rng.random() < 0.7 else 2
        marks.add_scratch(pts, int(rng.uniform(150, 255)), width)
    marks.darken(amp)
    defocus = rng.uniform(0, settings.max_defocus) if rng.random() < 0.8 else 0.0
    smudge = None
    if rng.random() < 0.7:  # grease on the glass: a smooth random path error that scatters a glow
        noise = rng.standard_normal((grid, grid)).astype(np.float32)
        smooth = cv2.GaussianBlur(noise, (0, 0), radius / rng.uniform(6, 30))
        inside = amp > 0
        smooth -= smooth[inside].mean()
        smudge = smooth * (rng.uniform(0.02, 0.12) / max(float(smooth[inside].std()), 1e-9))
    return Aperture(amp, radius, sides, defocus, smudge)


def _pupil_field(aperture: Aperture, wavelength: float) -> np.ndarray:
    """The pupil's complex field at ``wavelength``, cropped to its opening and resampled by 540 nm / wavelength.

    The FFT's frequency step is an angle proportional to wavelength / pupil pixel pitch; sampling the
    same pupil with a pitch proportional to the wavelength keeps every wavelength on the same angular
    grid, so the PSF comes out magnified by wavelength / 540 nm (red wider than blue) with no
    resampling of the PSF itself.
    """
    grid = aperture.amplitude.shape[0]
    half = int(np.ceil(aperture.radius)) + 2
    c = grid // 2
    box = aperture.amplitude[c - half : c + half, c - half : c + half]
    zoom = LAMBDA_REF / wavelength
    side = max(4, int(round(2 * half * zoom)))
    scaled = cv2.resize(box, (side, side), interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    y, x = np.ogrid[:side, :side]
    r = aperture.radius * side / (2 * half)
    rho2 = ((x - side / 2 + 0.5) ** 2 + (y - side / 2 + 0.5) ** 2) / r**2
    waves = aperture.defocus * (2 * rho2 - 1)  # Zernike defocus
    if aperture.smudge is not None:
        box = aperture.smudge[c - half : c + half, c - half : c + half]
        waves = waves + cv2.resize(box, (side, side), interpolation=cv2.INTER_LINEAR)
    phase = (2 * np.pi * LAMBDA_REF / wavelength) * waves
    return (scaled * np.exp(1j * phase)).astype(np.complex64)


def monochromatic_psf(aperture: Aperture, wavelength: float, workers: int = 1, centred: bool = True) -> np.ndarray:
    """(grid, grid) PSF at ``wavelength`` nm on the 540 nm angular grid; sums to 1 (centred unless told)."""
    grid = aperture.amplitude.shape[0]
    field = _pupil_field(aperture, wavelength)
    spectrum = scipy.fft.fft2(field, s=(grid, grid), workers=workers)  # where the pupil lies changes no |F|
    power = spectrum.real * spectrum.real
    power += spectrum.imag * spectrum.imag
    power /= grid * grid * float(np.sum(np.abs(field) ** 2))  # Parseval: now it sums to 1
    return np.fft.fftshift(power) if centred else power


def spectral_psf(aperture: Aperture, lambdas: np.ndarray, workers: int = 1) -> np.ndarray:
    """(grid, grid, 3) RGB PSF: the monochromatic PSFs of a flat spectrum through the colour responses;
    each channel sums to 1."""
    weights = channel_responses(lambdas).astype(np.float32)
    grid = aperture.amplitude.shape[0]
    planes = np.zeros((3, grid, grid), np.float32)
    for lam, w in zip(lambdas, weights):
        mono = monochromatic_psf(aperture, lam, workers, centred=False)
        for ch in range(3):
            planes[ch] += w[ch] * mono
    out = np.fft.fftshift(planes, axes=(1, 2)).transpose(1, 2, 0)
    return np.ascontiguousarray(out / out.sum(axis=(0, 1)))


def aperture_thumbnail(aperture: Aperture) -> np.ndarray:
    """The aperture's opening (a square around it) shrunk to APERTURE_THUMB pixels, uint8."""
    grid = aperture.amplitude.shape[0]
    r = int(np.ceil(aperture.radius)) + 2
    c = grid // 2
    crop = aperture.amplitude[c - r : c + r, c - r : c + r]
    thumb = cv2.resize(crop, (APERTURE_THUMB, APERTURE_THUMB), interpolation=cv2.INTER_AREA)
    return np.round(np.clip(thumb, 0, 1) * 255).astype(np.uint8)


def radial_window(size: int, start: float = 0.7) -> np.ndarray:
    """(size, size) taper: 1 within ``start`` of the inscribed circle's radius, falling smoothly to 0 on it."""
    y, x = np.ogrid[:size, :size]
    r = np.hypot(x - (size - 1) / 2, y - (size - 1) / 2) / (size / 2)
    t = np.clip((r - start) / (1 - start), 0, 1)
    return (np.cos(0.5 * np.pi * t) ** 2).astype(np.float32)


def shrink(psf: np.ndarray, size: int) -> np.ndarray:
    """A (size, size, 3) copy of an RGB PSF, area-averaged and tapered to 0 at its inscribed circle (no square
    corners of faint halo in an image), each channel summing to 1."""
    small = cv2.resize(psf, (size, size), interpolation=cv2.INTER_AREA) if psf.shape[0] != size else psf
    small = np.clip(small, 0, None) * radial_window(size)[..., None]
    return small / small.sum(axis=(0, 1))

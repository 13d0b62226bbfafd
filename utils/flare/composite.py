"""Flare from the lights, and the pair of images: input (scene, lights and flare) and target (scene and lights).

All of it happens in linear light:

1. *Kernel.* A PSF from the bank, with Flare7K-style random changes: a size (its full width 50-130 %
   of the image's longer side), rotation, shear and stretch, a Gaussian blur, a colour gain and,
   at random, a faint veiling glare (a wide Gaussian of 0.2-1.5 % of the energy, inside the
   kernel's reach). The PSF's core, the Airy disc (the light itself as the camera resolves it,
   which the target keeps), is notched out: the kernel holds only what the lens scatters, so each
   channel sums to 1 minus the core's share.
2. *Scattering.* The lights' emission convolved with the kernel by FFT (zero-padded, so no
   flare wraps round the edges). Where the kernel is wider than the stored PSF (384 pixels), the
   convolution runs on the emission shrunk by the whole factor width // 384 (area mean, so no
   energy is lost; the kernel keeps all its stored detail) and its result is enlarged again: a
   1224x1632 image is convolved at 1/2 to 1/5 of its size.
3. *Ghosts.* Faint, tinted copies of the aperture along the line from each of the brightest
   lights through the image centre (a lens's internal reflections): one recipe of 2-6 ghosts
   per image (place on that line, size, tint, strength, sharpness), applied to each light with
   a strength proportional to its energy.
4. *Gain and DC offset.* The scattered light is scaled by 0.25-1 (log-uniform), then the flare
   layer is lowered by a small constant (2e-4 to 2e-3 of white) and clipped at zero, which trims
   its faintest tails and the FFT's round-off. Flare7K also lifts it; a lift would tint the whole
   frame, so it is not done here: far from the lights the input equals the target up to sensor noise.
5. *Compositing.* input = scene + emission + flare + noise, target = scene + emission, noise
   signal-dependent (shot and read noise); both clipped to [0, 1], brought back to gamma with the
   pair's gamma (1.8-2.2) and quantised to 8 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.flare import masks as mask_ops
from utils.flare.bank import PSFBank
from utils.flare.fftconv import convolve, odd
from utils.flare.light_sources import Lights
from utils.flare.night import NightLook, jpeg_round_trip, shared_noise
from utils.flare.phone import PhoneFlare, phone_flare

GAMMA_RANGE = (1.8, 2.2)
EXTENT_RANGE = (0.5, 1.3)  # kernel width over the image's longer side
GHOST_LIGHTS = 4  # the brightest lights that cast ghosts
CORE_RADIUS = 1.0  # of the notch that leaves the PSF's core out of the flare, in stored PSF pixels
GHOST_TINTS = np.array(
    [[0.45, 1.0, 0.5], [1.0, 0.45, 0.9], [1.0, 0.75, 0.35], [0.4, 0.8, 1.0], [0.7, 0.5, 1.0], [0.9, 1.0, 0.4]],
    np.float32,
)


@dataclass
class Kernel:
    rgb: np.ndarray  # (K, K, 3), each channel sums to 1
    rotation: float  # radians, to turn the ghosts' aperture with it
    index: int  # in the bank


@dataclass(frozen=True)
class PairOptions:
    """What a pair is made with beyond its two images."""

    masks: bool = False  # the glare and streak masks
    noise: bool = True  # sensor noise on the input
    keep_layers: bool = False  # the linear flare layer, kept in the pair
    with_flare: bool = True  # False: a flare-free pair (input = target + sensor noise)
    phone: PhoneFlare | None = None  # streaks and glow of a phone (``utils.flare.phone``), drawn for this pair
    night: NightLook | None = None  # the night camera (``utils.flare.night``), drawn for this pair


@dataclass
class FlarePair:
    """A synthesized training pair: the flared input, its clean target and, on request, masks and the flare layer."""

    input: np.ndarray  # (H, W, 3) uint8 RGB
    target: np.ndarray
    glare: np.ndarray | None = None  # (H, W) uint8 masks, with PairOptions.masks
    streak: np.ndarray | None = None
    flare: np.ndarray | None = None  # (H, W, 3) float32 linear flare layer, with PairOptions.keep_layers
    gamma: float = 2.2
    finite: bool = True  # whether both images were finite in linear light (8 bits would turn NaN into black)

    @property
    def psnr(self) -> float:
        mse = np.mean((self.input.astype(np.float64) - self.target) ** 2)
        return float(10 * np.log10(255**2 / max(mse, 1e-10)))


def encode(linear: np.ndarray, gamma: float) -> np.ndarray:
    """Linear light to 8-bit: clipped to [0, 1], raised to 1/gamma, rounded."""
    out = np.clip(linear, 0, 1, dtype=np.float32)
    np.power(out, np.float32(1 / gamma), out=out)
    out *= 255
    out += 0.5
    return out.astype(np.uint8)


def make_kernel(bank: PSFBank, size: int, rng: np.random.Generator, index: int | None = None) -> Kernel:
    """A (size, size, 3) kernel (``size`` odd) from a bank PSF: resized, turned, sheared, stretched, blurred,
    its core notched out, perhaps given a faint veiling glare, tinted by a colour gain."""
    index = int(rng.integers(len(bank))) if index is None else index
    psf = bank.psf(index)
    interp = cv2.INTER_AREA if size < psf.shape[0] else cv2.INTER_LINEAR
    psf = cv2.resize(psf, (size, size), interpolation=interp)
    rotation = rng.uniform(0, 2 * np.pi)
    shear, stretch = rng.uniform(-0.12, 0.12), rng.uniform(0.88, 1.12)
    c, s = np.cos(rotation), np.sin(rotation)
    linear = np.array([[c, -s], [s, c]]) @ np.array([[stretch, shear], [0, 1 / stretch]])
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    matrix = np.hstack([linear, (centre - linear @ centre)[:, None]])
    psf = cv2.warpAffine(psf, matrix, (size, size), flags=cv2.INTER_LINEAR)
    sigma = rng.uniform(0, 1.5)
    if sigma > 0.3:
        psf = cv2.GaussianBlur(psf, (0, 0), sigma)
    psf = np.clip(psf, 0, None)
    psf /= np.maximum(psf.sum(axis=(0, 1)), 1e-20)
    # The core (the Airy disc: the light itself as the camera resolves it) is the target's, not flare:
    # a notch of about two thirds of its radius leaves only what the lens scatters out of the light.
    y, x = np.ogrid[:size, :size]
    r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2
    core = CORE_RADIUS * size / bank.size
    psf *= (1 - np.exp(-0.5 * r2 / core**2)).astype(np.float32)[..., None]
    if rng.random() < 0.5:  # veiling glare: a wide, faint Gaussian within the kernel's reach
        wide = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * (size / 7) ** 2)).astype(np.float32)
        share = rng.uniform(0.002, 0.015)
        psf = (1 - share) * psf + share * (wide / wide.sum())[..., None]
    gain = rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return Kernel((psf * gain).astype(np.float32), rotation, index)


def ghost_recipe(rng: np.random.Generator) -> list[tuple]:
    """One image's ghosts, 2-6 of them: (place on the line, radius over the shorter side, strength, tint, ring, blur)."""
    recipe = []
    for _ in range(int(rng.integers(2, 7))):
        t = rng.uniform(-1.4, 0.7)  # 1 is the light itself, 0 the centre, below 0 beyond it
        radius = float(np.exp(rng.uniform(np.log(0.015), np.log(0.12))))
        strength = float(np.exp(rng.uniform(np.log(3e-4), np.log(6e-3))))
        tint = GHOST_TINTS[rng.integers(len(GHOST_TINTS))] * rng.uniform(0.7, 1.0)
        ring = rng.random() < 0.3
        blur = rng.uniform(0.02, 0.25)
        recipe.append((t, radius, strength, tint, ring, blur))
    return recipe


def ghost_image(thumb: np.ndarray, radius: float, ring: bool, blur: float) -> np.ndarray | None:
    """(S, S) float32 summing to 1, S odd: the aperture ``thumb`` at ``radius`` pixels, hollowed to a ring if told,
    blurred by ``blur`` of its radius; None if nothing is left of it."""
    side = max(3, odd(2 * radius))
    interp = cv2.INTER_AREA if side < thumb.shape[0] else cv2.INTER_LINEAR
    image = cv2.resize(thumb, (side, side), interpolation=interp)
    if ring and side >= 9:
        inner = cv2.erode(image, np.ones((3, 3), np.uint8), iterations=max(1, side // 12))
        image = image - 0.65 * inner
    pad = int(np.ceil(3 * blur * radius)) + 1
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    if blur * radius > 0.5:
        image = cv2.GaussianBlur(image, (0, 0), blur * radius)
    total = float(image.sum())
    return (image / total).astype(np.float32) if total > 0 else None


def render_ghosts(shape: tuple[int, int], lights: Lights, scale: float, aperture: np.ndarray, rotation: float,
                  rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """(H, W, 3) float32 ghosts at the working size ``shape`` (``scale`` = working / full pixels) of the
    ``GHOST_LIGHTS`` brightest lights: one recipe of 2-6 aperture copies per image, placed on the line from
    each light through the centre, each with a tint, a size and a strength relative to the light's energy."""
    height, width = shape
    out = np.zeros((height, width, 3), np.float32)
    if not lights.energies:
        return out
    luma = np.array([float(e @ mask_ops.LUMA) for e in lights.energies])
    order = [k for k in np.argsort(-luma)[:GHOST_LIGHTS] if luma[k] > 0]
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    thumb = aperture
    if rng.random() < 0.7:  # the iris turned as the PSF was
        m = cv2.getRotationMatrix2D(((thumb.shape[1] - 1) / 2, (thumb.shape[0] - 1) / 2), np.degrees(rotation), 1.0)
        thumb = cv2.warpAffine(thumb, m, thumb.shape[::-1], flags=cv2.INTER_LINEAR)
    for t, radius, strength, tint, ring, blur in ghost_recipe(rng):
        ghost = ghost_image(thumb, radius * min(height, width), ring, blur)
        if ghost is None:
            continue
        half = ghost.shape[0] // 2
        for k in order:
            py, px = centre + t * (np.array(lights.centres[k]) * scale - centre)
            top, left = int(round(py)) - half, int(round(px)) - half
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + ghost.shape[0], height), min(left + ghost.shape[1], width)
            if y1 > y0 and x1 > x0:
                energy = lights.energies[k] * (scale * scale) * strength * tint
                out[y0:y1, x0:x1] += ghost[y0 - top : y1 - top, x0 - left : x1 - left, None] * energy
    return out


def render_flare(lights: Lights, bank: PSFBank, rng: np.random.Generator, streaks: bool = False):
    """(flare, streak): the linear flare layer (H, W, 3) of ``lights``, and with ``streaks`` its streak part
    (H, W) in luminance, else None."""
    height, width = lights.emission.shape[:2]
    extent = rng.uniform(*EXTENT_RANGE) * max(height, width)
    factor = max(1, int(extent // bank.size))  # work smaller where the kernel is wider than its stored detail
    work = (-(-height // factor), -(-width // factor))
    emission = lights.emission
    if factor > 1:
        emission = cv2.resize(emission, work[::-1], interpolation=cv2.INTER_AREA)
    kernel = make_kernel(bank, odd(extent / factor), rng)
    gain = float(np.exp(rng.uniform(np.log(0.25), np.log(1.0))))
    flare = convolve(emission, kernel.rgb) * gain
    flare += render_ghosts(work, lights, 1 / factor, bank.aperture(kernel.index), kernel.rotation, rng)
    offset = rng.uniform(2e-4, 2e-3)  # also trims the FFT's round-off far from the lights
    flare = np.clip(flare - offset, 0, None)
    streak = None
    if streaks:
        streak = convolve(emission @ mask_ops.LUMA, mask_ops.streak_kernel(kernel.rgb))[..., 0] * gain
    if factor > 1:
        flare = cv2.resize(flare, (width, height), interpolation=cv2.INTER_LINEAR)
        if streak is not None:
            streak = cv2.resize(streak, (width, height), interpolation=cv2.INTER_LINEAR)
    return flare, streak


def add_noise(linear: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signal-dependent sensor noise: variance a * signal + b (shot and read noise), a and b drawn per image."""
    a = float(np.exp(rng.uniform(np.log(3e-5), np.log(3e-4))))
    b = float(np.exp(rng.uniform(np.log(2e-7), np.log(3e-6))))
    sigma = np.clip(linear, 0, 1) * np.float32(a)
    sigma += np.float32(b)
    np.sqrt(sigma, out=sigma)
    sigma *= rng.standard_normal(linear.shape, dtype=np.float32)
    return linear + sigma


def synthesize(scene: np.ndarray, lights: Lights, bank: PSFBank, gamma: float, rng: np.random.Generator,
               options: PairOptions | None = None) -> FlarePair:  # fmt: skip
    """The input and target of one pair (and with ``options.masks`` the glare and streak masks) from a linear scene
    and its lights; ``options.phone`` adds streaks and glow (``utils.flare.phone``), ``options.night`` the night
    camera (``utils.flare.night``: gains, shared noise and JPEG, the same for input and target).

    A flare-free pair (``options.with_flare`` false: input = target + sensor noise) shows lamps that need nothing
    removed. Its flare is still drawn, and dropped, so that the random stream goes on exactly as in a flared pair.
    """
    options = options or PairOptions()
    flare, streak = render_flare(lights, bank, rng, streaks=options.masks)
    if options.phone is not None:
        extra, rays = phone_flare(lights, options.phone)
        flare += extra
        streak = None if streak is None else streak + rays
    if not options.with_flare:
        flare = np.zeros_like(flare)
        streak = None if streak is None else np.zeros_like(streak)
    target_linear = scene + lights.emission
    night = options.night
    if night is not None:  # exposure and white balance: the same gains on scene, lights and flare
        target_linear, flare = target_linear * night.gains, flare * night.gains
        streak = None if streak is None else streak * float(night.gains @ mask_ops.LUMA)
    flared = target_linear + flare
    noisy, target_noisy = flared, target_linear
    if options.noise and night is not None:
        noisy, target_noisy = shared_noise([flared, target_linear], night)
    elif options.noise:
        noisy = add_noise(flared, rng)
    finite = bool(np.isfinite(noisy).all() and np.isfinite(target_noisy).all())
    pair = FlarePair(encode(noisy, gamma), encode(target_noisy, gamma), gamma=gamma, finite=finite)
    if options.masks:
        target8 = pair.target if target_noisy is target_linear else encode(target_linear, gamma)
        pair.glare = mask_ops.visible(target8, encode(flared, gamma))
        raised = encode(target_linear + streak[..., None], gamma)
        pair.streak = mask_ops.visible(target8, raised) & pair.glare
    if night is not None:
        pair.input, pair.target = (jpeg_round_trip(im, night.quality) for im in (pair.input, pair.target))
    if options.keep_layers:
        pair.flare = flare
    return pair

"""Light sources: lamps, windows and signs painted into a scene, and a scene's own bright regions.

Every light is an emission map in linear light, far above the scene (a white that just clips is
1.0; a lamp's core is tens to hundreds), with a colour from its colour temperature (sodium
2000 K to daylight-white LEDs 6500 K) or, for signs, a neon tint. A ``Light`` says where one
light sits, how bright and what colour it is; ``lamp``, ``window`` and ``sign`` give it a shape.
``Lights`` keeps the emission map of a whole image and, for the ghosts, the centre and total
energy of each light. (Not to be confused with ``utils.infer.keep_lights``, which finds the
clipped light cores of a photograph to restore.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from utils.flare.spectrum import temperature_rgb

NEON = np.array(
    [[1.0, 0.12, 0.1], [1.0, 0.2, 0.55], [0.25, 0.45, 1.0], [0.2, 1.0, 0.35], [0.75, 0.3, 1.0], [1.0, 0.55, 0.1]],
    np.float32,
)


@dataclass(frozen=True)
class Light:
    """One light to paint: its centre (y, x) in pixels, its peak in multiples of the white that clips, its colour."""

    cy: float
    cx: float
    intensity: float
    colour: np.ndarray  # linear RGB, max channel 1


@dataclass
class Lights:
    """The emission map (H, W, 3) float32 of an image's lights, and each light's centre (y, x) and energy (RGB sums)."""

    emission: np.ndarray
    centres: list = field(default_factory=list)
    energies: list = field(default_factory=list)

    @classmethod
    def empty(cls, height: int, width: int) -> Lights:
        return cls(np.zeros((height, width, 3), np.float32))

    def add(self, mask: np.ndarray, top: int, left: int, colour: np.ndarray) -> None:
        """Add ``mask`` (float32, h x w, 0-1 times intensity) tinted by ``colour`` at (top, left), clipped to the image."""
        height, width = self.emission.shape[:2]
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + mask.shape[0], height), min(left + mask.shape[1], width)
        if y1 <= y0 or x1 <= x0:
            return
        part = mask[y0 - top : y1 - top, x0 - left : x1 - left]
        total = float(part.sum())
        if total <= 0:
            return
        self.emission[y0:y1, x0:x1] += part[..., None] * colour
        ys, xs = np.nonzero(part > 0)
        weights = part[ys, xs]
        self.centres.append((y0 + float(np.average(ys, weights=weights)), x0 + float(np.average(xs, weights=weights))))
        self.energies.append((total * np.asarray(colour, np.float64)).astype(np.float32))


def light_colour(rng: np.random.Generator, neon: bool = False) -> np.ndarray:
    """A light's linear RGB colour (max channel 1): a neon tint, or a black body of a random colour temperature."""
    if neon:
        return NEON[rng.integers(len(NEON))].copy()
    kelvin = float(rng.choice([rng.uniform(1900, 2300), rng.uniform(2600, 3600), rng.uniform(3800, 6800)]))
    return temperature_rgb(kelvin)


def _canvas(half_h: int, half_w: int) -> tuple[np.ndarray, int, int]:
    return np.zeros((2 * half_h + 1, 2 * half_w + 1), np.uint8), half_h, half_w


def lamp(lights: Lights, light: Light, radius: float) -> None:
    """A round lamp: a bright disc with a softer rim (a diffuser), anti-aliased."""
    r = max(radius, 1.0)
    pad = int(np.ceil(r * 1.6)) + 2
    canvas, oy, ox = _canvas(pad, pad)
    centre = (int(round((ox + light.cx % 1) * 16)), int(round((oy + light.cy % 1) * 16)))
    cv2.circle(canvas, centre, int(round(r * 16)), 255, -1, cv2.LINE_AA, shift=4)
    mask = canvas.astype(np.float32) / 255.0
    if r > 2:
        mask = np.maximum(mask, cv2.GaussianBlur(mask, (0, 0), r * 0.35) * 0.6)
    _add(lights, light, mask, (oy, ox))


def window(lights: Lights, light: Light, half_h: float, half_w: float, panes: bool) -> None:
    """A lit window: a rectangle, evenly bright, perhaps split into panes by dark bars."""
    hh, hw = max(int(half_h), 1), max(int(half_w), 1)
    mask = np.ones((2 * hh + 1, 2 * hw + 1), np.float32)
    if panes and hh >= 4 and hw >= 4:
        bar = max(1, min(hh, hw) // 6)
        mask[hh - bar // 2 : hh + bar // 2 + 1] = 0.1
        mask[:, hw - bar // 2 : hw + bar // 2 + 1] = 0.1
    yy = np.linspace(-1, 1, mask.shape[0])[:, None]
    mask *= (1 - 0.35 * yy**2).astype(np.float32)  # brighter in the middle, as a lit room behind glass
    _add(lights, light, mask, (hh, hw))


def sign(lights: Lights, light: Light, length: float, thickness: float, rng: np.random.Generator) -> None:
    """A neon sign: a thin bar, an outlined box, or a few letter-like strokes."""
    half_w = int(length / 2) + 3
    half_h = int(max(length * 0.3, thickness * 3)) + 3
    canvas, oy, ox = _canvas(half_h, half_w)
    t = max(1, int(round(thickness)))
    kind = rng.integers(3)
    if kind == 0:
        cv2.line(canvas, (ox - int(length / 2), oy), (ox + int(length / 2), oy), 255, t, cv2.LINE_AA)
    elif kind == 1:
        h = int(length * 0.25)
        cv2.rectangle(canvas, (ox - int(length / 2), oy - h), (ox + int(length / 2), oy + h), 255, t, cv2.LINE_AA)
    else:
        letters = int(rng.integers(2, 6))
        step = length / letters
        h = length * 0.25
        for k in range(letters):
            x0 = ox - length / 2 + k * step + step * 0.15
            pts = np.stack([x0 + rng.uniform(0, step * 0.7, 4), oy + rng.uniform(-h, h, 4)], axis=1)
            cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, t, cv2.LINE_AA)
    _add(lights, light, canvas.astype(np.float32) / 255.0, (oy, ox))


def _add(lights: Lights, light: Light, mask: np.ndarray, centre: tuple[int, int]) -> None:
    """``mask`` (0-1), whose pixel ``centre`` (y, x) falls on the light's centre, added at the light's peak and colour."""
    lights.add(mask * light.intensity, int(light.cy) - centre[0], int(light.cx) - centre[1], light.colour)


def paint_lights(lights: Lights, rng: np.random.Generator, count: int | None = None) -> None:
    """Add 3-8 lights of random kinds, places and colours: lamps (most), windows and signs."""
    height, width = lights.emission.shape[:2]
    unit = min(height, width)
    for _ in range(int(rng.integers(3, 9)) if count is None else count):
        cy, cx = rng.uniform(0.05, 0.9) * height, rng.uniform(0.04, 0.96) * width
        kind = rng.choice(["lamp", "lamp", "lamp", "window", "sign"])
        if kind == "lamp":
            radius = unit * rng.uniform(0.004, 0.016)
            lamp(lights, Light(cy, cx, lamp_intensity(rng), light_colour(rng)), radius)
        elif kind == "window":
            hh, hw = unit * rng.uniform(0.015, 0.045), unit * rng.uniform(0.012, 0.035)
            window(lights, Light(cy, cx, rng.uniform(1.0, 4.0), light_colour(rng)), hh, hw, bool(rng.random() < 0.5))
        else:
            colour = light_colour(rng, neon=bool(rng.random() < 0.7))
            length, thick = unit * rng.uniform(0.05, 0.14), max(1.0, unit * rng.uniform(0.003, 0.007))
            sign(lights, Light(cy, cx, rng.uniform(4.0, 30.0), colour), length, thick, rng)


def lamp_intensity(rng: np.random.Generator) -> float:
    """A lamp's peak, in multiples of the white that clips: log-uniform from 30 to 1500."""
    return float(np.exp(rng.uniform(np.log(30.0), np.log(1500.0))))


def bright_regions(lights: Lights, scene: np.ndarray, rng: np.random.Generator, most: int = 5) -> None:
    """Turn the scene's own highlights (its brightest small regions) into lights: up to ``most`` regions of the
    brightest 0.5 % of pixels above 0.45 in linear light, each lifted 6-40 times and tinted by a colour temperature."""
    height, width = scene.shape[:2]
    luma = scene @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    step = max(1, int(max(height, width) // 512))
    small = luma[::step, ::step]
    level = max(0.45, float(np.quantile(small, 0.995)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats((small >= level).astype(np.uint8), connectivity=8)
    area_max = 0.015 * small.size
    found = [k for k in range(1, count) if 2 <= stats[k, cv2.CC_STAT_AREA] <= area_max]
    found.sort(key=lambda k: -stats[k, cv2.CC_STAT_AREA])
    for k in found[:most]:
        x, y, w, h = (int(v) * step for v in stats[k, :4])
        pad = 2 * step
        top, left = max(0, y - pad), max(0, x - pad)
        bottom, right = min(height, y + h + pad), min(width, x + w + pad)
        region = luma[top:bottom, left:right]
        mask = np.clip((region - level) / max(1e-3, 1 - level) * 2, 0, 1).astype(np.float32)
        lights.add(mask * rng.uniform(6.0, 40.0), top, left, light_colour(rng))

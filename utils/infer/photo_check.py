"""Judging a restoration of a real photo, which has no clean target: three measures around and away from its lights.

* ``glare_removed``: how much darker the ring around the light cores became (from ``RING`` pixels around a core
  out to ``FAR`` pixels), as a share of the ring's brightness in the photo: the glow and streaks that the model
  took away. Positive is removal; a model that only darkens everywhere also scores here, which is why the third
  measure exists.
* ``cores_kept``: the light cores' brightness in the restoration over the photo's (``keep_lights``): lamps
  should stay lamps, at least 90%.
* ``colour_change``: the mean CIE76 colour difference (Delta E in CIELAB) between photo and restoration over
  the pixels more than ``FAR`` pixels from every core: what the model changed where there is no glare to
  remove. Below 2 is hard to see side by side; above 5 is a visible shift.
A photo without clipped lights has no ring and no cores: those two measures are NaN, the colour change is over
the whole photo. ``RING`` and ``FAR`` are pixels of a photo whose long side is ``SCALE_FROM``, restore.py's
working size; a larger photo's grow with it, so that the glow of a 12-megapixel photo's lamps, four times as
wide in pixels, counts as glow and not as a colour change far from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.infer.keep_lights import core_brightness_ratio, light_cores

RING = 4  # pixels around a core that still belong to the lamp itself (its clipped rim)
FAR = 96  # pixels from every core beyond which a photo should come back unchanged
SCALE_FROM = 1024  # the long side, in pixels, at and below which RING and FAR are taken as they are


@dataclass(frozen=True)
class PhotoScores:
    glare_removed: float  # share of the ring's brightness taken away, from -1 up to 1
    cores_kept: float  # light cores' brightness in the restoration over the photo's
    colour_change: float  # mean CIE76 Delta E far from the lights


def distance_to_lights(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's distance in pixels to the nearest light core (infinite where the photo has none)."""
    cores = light_cores(rgb)
    if not cores.any():
        return np.full(rgb.shape[:2], np.inf, np.float32)
    return cv2.distanceTransform((~cores).astype(np.uint8), cv2.DIST_L2, 5)


def delta_e(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """CIE76 colour difference per pixel between two 8-bit RGB images."""
    lab = [cv2.cvtColor(x.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB) for x in (a, b)]
    return np.sqrt(((lab[0] - lab[1]) ** 2).sum(axis=-1))


def photo_scores(photo: np.ndarray, restored: np.ndarray) -> PhotoScores:
    """The three measures of one restored photo (both 8-bit RGB of one size)."""
    if photo.shape != restored.shape:
        raise ValueError(f"the restoration is {restored.shape[:2]}, the photo {photo.shape[:2]}")
    distance = distance_to_lights(photo) / max(1.0, max(photo.shape[:2]) / SCALE_FROM)
    ring = (distance > RING) & (distance <= FAR)
    far = distance > FAR
    glare = float("nan")
    if ring.any():
        before = photo[ring].astype(np.float64).mean()
        glare = float((before - restored[ring].astype(np.float64).mean()) / max(before, 1e-6))
    colour = float(delta_e(photo, restored)[far].mean()) if far.any() else float("nan")
    return PhotoScores(glare, core_brightness_ratio(photo, restored), colour)


def lamp_window(rgb: np.ndarray, size: int = 160) -> tuple[slice, slice]:
    """A ``size`` square around the input's largest clipped light (the centre without one)."""
    h, w = rgb.shape[:2]
    count, _, stats, centroids = cv2.connectedComponentsWithStats(light_cores(rgb).astype(np.uint8))
    cy, cx = (h / 2, w / 2) if count < 2 else centroids[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))][::-1]
    top = int(np.clip(cy - size / 2, 0, max(h - size, 0)))
    left = int(np.clip(cx - size / 2, 0, max(w - size, 0)))
    return slice(top, top + size), slice(left, left + size)

"""Light sources kept: the saturated cores of lamps, copied back from the input (``test.py --keep_lights``).

A flare-removal model learns to take light away around bright sources, and a small one takes
some from the sources too: lamps come out grey. The input's clipped cores are the one thing
known for certain about them, so they are blended back with a soft mask (Wu et al., ICCV 2021,
and Flare7K do the same): threshold, an opening that drops isolated clipped pixels (noise,
glints), and a fall-off whose width follows each source's size, so a large window gets a wide,
gentle edge and a small lamp a narrow one. The fall-off is a smoothstep of the distance to the
core: 1 on the core's edge and at least 0.84 one pixel out, where a blurred mask (about 0.4
just outside) left a visible ring between the photo's core and the model's output. A narrow
edge (test.py's, a tenth of the core's size) keeps least of the glow; a photo looks more natural
with a wider one (restore.py's ``--lamp_edge``): a hard edge shows the clipped region's ragged
outline, and the lamp looks cut out. A strong lamp's short clipped spikes (the inner part of its
rays, which the flare clipped too) are not blended back: kept, they were the stubby starburst left
around the lamp after the model removed the rest of each ray.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

CORE_LEVEL = 250  # 8-bit level from which a channel counts as clipped
# The fall-off's width, by default a tenth of a core's size and at least 4 pixels (whose steepest step between
# neighbours in a row or column is 1.5 / 4): a wider one keeps the glow just outside the cores, which the model removed.
EDGE_SHARE = 0.1
MIN_EDGE = 4.0
EDGE_SCALE = 1024  # a longer image's least edge grows with it (restore.py's working size)
STRIP_LIMIT = 4  # a core's size is at most this many times its thickness (a neon tube is no lamp of its area)
# Flare clips the inner part of a strong lamp's rays too, so its clipped core is a disc with spikes: blended back,
# they are the stubby starburst left around the lamp. A part of a core thinner than RAY_SHARE of its largest
# inscribed radius (an opening) that ends within RAY_REACH of those radii from the lamp's body is such a spike, and
# is left to the model; a longer one (a clipped streak that joins the lamp to a neon sign) stays, whole.
RAY_SHARE = 0.5
RAY_REACH = 1.5
RAY_DISC = 8  # the opening runs on a copy scaled so that its disc's radius is at most this: a 12-megapixel window's
# costs what a small lamp's does (at full size one 800x1000 window took 5 s, a clipped sky minutes)


def light_cores(rgb: np.ndarray, level: int = CORE_LEVEL) -> np.ndarray:
    """(H, W) bool: the clipped light cores of an 8-bit RGB image, without specks narrower than 3 pixels."""
    brightest = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])  # rgb.max(axis=2), 25x faster
    clipped = (brightest >= level).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return cv2.morphologyEx(clipped, cv2.MORPH_OPEN, kernel).astype(bool)


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Each pixel's Euclidean distance, in pixels, to the nearest pixel of the (H, W) bool ``mask`` (inf: none)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def light_mask(rgb: np.ndarray, edge: float = EDGE_SHARE, level: int = CORE_LEVEL) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 on the cores, falling smoothly to 0 over ``edge`` of each core's size, and over
    at least ``MIN_EDGE`` pixels per ``EDGE_SCALE`` of the long side (so that a small lamp of a 12-megapixel
    photo gets the edge it gets on the working copy, not a quarter of it). A core's size is the diameter of a
    disc of its area, at most four times its thickness (the largest disc inside it), so that a long thin strip
    is not taken for a lamp of its area. Each core's fall-off is found in a box around it, and a pixel takes the
    largest of them, so there is no step where the nearest lamp changes. The clipped inner part of a large lamp's
    rays is left to the model (``without_rays``)."""
    cores = light_cores(rgb, level)
    mask = np.zeros(cores.shape, np.float32)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(cores.astype(np.uint8), connectivity=8)
    inside = cv2.distanceTransform(cores.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    least = MIN_EDGE * max(1.0, max(rgb.shape[:2]) / EDGE_SCALE)
    for core in range(1, count):
        left, top, width, height, area = stats[core]
        own = np.s_[top : top + height, left : left + width]
        thickness = 2 * float(inside[own][labels[own] == core].max())
        fall = max(least, edge * min(2 * float(np.sqrt(area / np.pi)), STRIP_LIMIT * thickness))
        pad = int(np.ceil(fall))
        box = np.s_[max(0, top - pad) : top + height + pad, max(0, left - pad) : left + width + pad]
        t = np.clip(1 - distance_to(without_rays(labels[box] == core, thickness / 2)) / fall, 0, 1)
        mask[box] = np.maximum(mask[box], t * t * (3 - 2 * t))
    return mask


def without_rays(core: np.ndarray, radius: float) -> np.ndarray:
    """The (H, W) bool ``core`` (a lamp whose largest inscribed disc has ``radius`` pixels) less its spikes: the
    parts thinner than ``RAY_SHARE`` of that radius that end within ``RAY_REACH`` radii of its body. A lamp under
    about 12 pixels across stays whole: its rays cannot be told from its corners."""
    radius = min(radius, min(core.shape) / 2)  # a core that fills its box has no background to measure from
    if int(RAY_SHARE * radius) < 3:
        return core
    body = opened(core, RAY_SHARE * radius)
    count, parts = cv2.connectedComponents((core & ~body).astype(np.uint8), connectivity=8)
    long = np.zeros(count, bool)
    long[np.unique(parts[distance_to(body) > RAY_REACH * radius])] = True
    long[0] = False  # the background and the body
    return body | long[parts]


def opened(core: np.ndarray, radius: float) -> np.ndarray:
    """The (H, W) bool ``core`` opened with a disc of ``radius`` pixels, on a copy scaled down so that the disc is
    at most ``RAY_DISC`` pixels across its radius (the opening's time grows with the disc's area), and brought
    back to full size within ``core``."""
    scale = min(1.0, RAY_DISC / radius)
    size = int(radius * scale)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * size + 1, 2 * size + 1))
    if scale == 1.0:
        return cv2.morphologyEx(core.astype(np.uint8), cv2.MORPH_OPEN, disc).astype(bool)
    small = cv2.resize(core.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) > 0.5
    body = cv2.morphologyEx(small.astype(np.uint8), cv2.MORPH_OPEN, disc).astype(np.float32)
    return core & (cv2.resize(body, core.shape[::-1], interpolation=cv2.INTER_LINEAR) > 0.5)


def near_lights(rgb: np.ndarray, reach: float) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 within ``reach / 2`` of the long side from a clipped light core, falling
    smoothly to 0 at ``reach`` (at least a pixel); all 0 for an image without cores."""
    span = max(1.0, reach * max(rgb.shape[:2]))
    t = np.clip(2 - 2 * distance_to(light_cores(rgb)) / span, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def out_of_reach(rgb: np.ndarray, reach: float) -> bool:
    """Whether a ``reach`` (``--light_reach``; 0 = off) would drop every change to ``rgb``: it has no clipped
    lights, so a model need not run on it at all."""
    return bool(reach) and not light_cores(rgb).any()


def only_near_lights(rgb: np.ndarray, image: torch.Tensor, restored: torch.Tensor, reach: float) -> torch.Tensor:
    """The restored (3, H, W) image with its change from ``image`` kept only near the lights of ``rgb`` (the
    input, as in ``keep_lights``): glare lives around bright sources, and what a model changes far from all of
    them is a mistake of the model, not glare."""
    weight = torch.from_numpy(near_lights(rgb, reach)).to(restored.device)
    return image + weight * (restored - image)


def keep_lights(rgb: np.ndarray, image: torch.Tensor, restored: torch.Tensor, edge: float = EDGE_SHARE) -> torch.Tensor:
    """The restored (3, H, W) image with the light cores of the input (``rgb``, and ``image``: the same as a
    tensor in [0, 1], as restored) blended back in, with an edge of ``edge`` of each core's size (``light_mask``)."""
    mask = torch.from_numpy(light_mask(rgb, edge)).to(restored.device)
    return restored + mask * (image - restored)


def core_brightness_ratio(inp: np.ndarray, out: np.ndarray) -> float:
    """Mean brightness of the input's light cores in ``out`` over that in the input (NaN without cores)."""
    cores = light_cores(inp)
    if not cores.any():
        return float("nan")
    return float(out[cores].astype(np.float64).mean() / inp[cores].astype(np.float64).mean())

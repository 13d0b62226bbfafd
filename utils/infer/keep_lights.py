"""Light sources kept: the saturated cores of lamps, copied back from the input (``test.py --keep_lights``).

A flare-removal model learns to take light away around bright sources, and a small one takes
some from the sources too: lamps come out grey. The input's clipped cores are the one thing
known for certain about them, so they are blended back with a soft mask (Wu et al., ICCV 2021,
and Flare7K do the same): threshold, an opening that drops isolated clipped pixels (noise,
glints), and a blur whose width follows the largest source, so a large window gets a wide,
gentle edge and a small lamp a narrow one.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

CORE_LEVEL = 250  # 8-bit level from which a channel counts as clipped
EDGE_SHARE = 0.25  # blur sigma as a share of the largest core's diameter


def light_cores(rgb: np.ndarray, level: int = CORE_LEVEL) -> np.ndarray:
    """(H, W) bool: the clipped light cores of an 8-bit RGB image, without specks narrower than 3 pixels."""
    clipped = (rgb.max(axis=2) >= level).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    return cv2.morphologyEx(clipped, cv2.MORPH_OPEN, kernel).astype(bool)


def light_mask(rgb: np.ndarray, level: int = CORE_LEVEL) -> np.ndarray:
    """(H, W) float32 in [0, 1]: 1 on the cores, falling off over a quarter of the largest core's diameter."""
    cores = light_cores(rgb, level)
    if not cores.any():
        return np.zeros(cores.shape, np.float32)
    count, _, stats, _ = cv2.connectedComponentsWithStats(cores.astype(np.uint8), connectivity=8)
    largest = stats[1:count, cv2.CC_STAT_AREA].max()
    sigma = max(1.0, EDGE_SHARE * 2 * np.sqrt(largest / np.pi))
    soft = cv2.GaussianBlur(cores.astype(np.float32), (0, 0), sigma)
    return np.maximum(soft, cores)  # the cores themselves stay whole


def keep_lights(rgb: np.ndarray, image: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """The restored (3, H, W) image with the light cores of the input (``rgb``, and ``image``: the same as a
    tensor in [0, 1], as restored) blended back in."""
    mask = torch.from_numpy(light_mask(rgb)).to(restored.device)
    return restored + mask * (image - restored)


def core_brightness_ratio(inp: np.ndarray, out: np.ndarray) -> float:
    """Mean brightness of the input's light cores in ``out`` over that in the input (NaN without cores)."""
    cores = light_cores(inp)
    if not cores.any():
        return float("nan")
    return float(out[cores].astype(np.float64).mean() / inp[cores].astype(np.float64).mean())

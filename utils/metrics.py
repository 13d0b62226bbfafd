"""Image quality metrics; PSNR agrees with ``skimage.metrics.peak_signal_noise_ratio``."""

from __future__ import annotations

import numpy as np
import torch


def psnr_tensor(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of tensors in [0, data_range], over the whole batch (as the original's training log)."""
    mse = torch.mean((pred.detach().float() - target.detach().float()) ** 2)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def psnr_uint8(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images, peak 255 (the contest metric); inf for identical images."""
    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {target.shape}")
    mse = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def psnr_masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of two 8-bit images over the pixels where the (H, W) ``mask`` is non-zero, all channels of them
    (the glare-region G-PSNR and streak-region S-PSNR of flare removal); NaN for an empty mask, inf where equal."""
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"shape mismatch {pred.shape} vs {target.shape} with mask {mask.shape}")
    inside = mask > 0
    if not inside.any():
        return float("nan")
    mse = np.mean((pred[inside].astype(np.float64) - target[inside].astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


SSIM_WINDOW = 11  # the Gaussian window of sigma 1.5 (Wang et al.), as scikit-image sizes it


def ssim_uint8(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two 8-bit RGB images (scikit-image, Gaussian-weighted as in Wang et al.).

    An image narrower or lower than the 11-pixel window is scored too: the Gaussian filter
    (which reflects at the borders) stays the same and only the border that scikit-image
    leaves out of the mean shrinks to fit, down to none for an image 1 or 2 pixels across.
    """
    from skimage.metrics import structural_similarity

    if pred.shape != target.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {target.shape}")
    side = min(pred.shape[:2])
    window = SSIM_WINDOW if side >= SSIM_WINDOW else max(1, side - (1 - side % 2))  # the largest odd size that fits
    return float(
        structural_similarity(
            pred, target, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, win_size=window,
        )
    )  # fmt: skip


def tile_borders(length: int, tile: int, starts: list[int]) -> list[int]:
    """Positions ``p`` inside an axis where a tile begins or ends, i.e. between pixels ``p - 1`` and ``p``."""
    edges = {s for s in starts} | {s + tile for s in starts}
    return sorted(p for p in edges if 0 < p < length)


def seam_ratio(image: np.ndarray, row_borders: list[int], col_borders: list[int]) -> float:
    """How much larger the step between neighbouring pixels is across tile borders than elsewhere.

    Mean absolute difference of neighbouring pixels across the given borders, divided by the
    same mean over all other neighbouring pairs, rows and columns together: 1.0 means no
    seam. Needs no clean target. NaN when the grid has no inner border.
    """
    img = image.astype(np.float64)
    down = np.abs(np.diff(img, axis=0)).mean(axis=tuple(range(1, img.ndim)))  # step between rows p-1 and p
    right = np.abs(np.diff(img, axis=1)).mean(axis=(0, *range(2, img.ndim)))
    on_rows = np.zeros(down.shape, bool)
    on_rows[[p - 1 for p in row_borders]] = True
    on_cols = np.zeros(right.shape, bool)
    on_cols[[p - 1 for p in col_borders]] = True
    width, height = img.shape[1], img.shape[0]
    seam = down[on_rows].sum() * width + right[on_cols].sum() * height
    seam_n = on_rows.sum() * width + on_cols.sum() * height
    rest = down[~on_rows].sum() * width + right[~on_cols].sum() * height
    rest_n = (~on_rows).sum() * width + (~on_cols).sum() * height
    if seam_n == 0 or rest_n == 0 or rest == 0:
        return float("nan")
    return float((seam / seam_n) / (rest / rest_n))


def mean_defined(values: list[float | None]) -> float:
    """Mean of the defined values (a seam measure is NaN for an image smaller than a tile; a region score is
    None for an image without that mask, NaN for an empty one); NaN if none is."""
    defined = [v for v in values if v is not None and not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


class AverageMeter:
    """Running mean weighted by sample count."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.total += value * n
        self.count += n

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else float("nan")

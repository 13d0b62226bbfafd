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


def ssim_uint8(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two 8-bit RGB images (scikit-image, Gaussian-weighted as in Wang et al.)."""
    from skimage.metrics import structural_similarity

    return float(
        structural_similarity(
            pred, target, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )

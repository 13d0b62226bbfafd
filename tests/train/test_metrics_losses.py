import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from utils.metrics import psnr_tensor, psnr_uint8, ssim_uint8
from utils.train.losses import CharbonnierLoss, EdgeLoss, RestorationLoss


def test_psnr_agrees_with_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    expected = peak_signal_noise_ratio(b, a, data_range=255)
    assert psnr_uint8(a, b) == pytest.approx(expected, abs=1e-9)
    ta, tb = (torch.from_numpy(x).float() / 255 for x in (a, b))
    assert psnr_tensor(ta, tb).item() == pytest.approx(expected, abs=1e-3)
    assert psnr_uint8(a, a) == math.inf


def test_ssim_of_identical_and_noisy():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim_uint8(a, a) == pytest.approx(1.0)
    assert ssim_uint8(a, 255 - a) < 0.1


def test_charbonnier_by_hand():
    pred = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    target = torch.tensor([[[[1.0, 0.5], [0.0, 0.0]]]])
    eps2 = 1e-6
    expected = (math.sqrt(1 + eps2) + math.sqrt(eps2) + math.sqrt(1 + eps2) + math.sqrt(0.0625 + eps2)) / 4
    assert CharbonnierLoss()(pred, target).item() == pytest.approx(expected, rel=1e-6)


def _laplacian_numpy(img: np.ndarray) -> np.ndarray:
    """Independent reference of the edge loss's high-pass, written with explicit loops."""
    k1 = np.array([0.05, 0.25, 0.4, 0.25, 0.05])
    k = np.outer(k1, k1)

    def gauss(x):
        padded = np.pad(x, 2, mode="edge")
        out = np.zeros_like(x)
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                out[i, j] = (padded[i : i + 5, j : j + 5] * k).sum()
        return out

    low = gauss(img)
    up = np.zeros_like(low)
    up[::2, ::2] = 4 * low[::2, ::2]
    return img - gauss(up)


def test_edge_loss_against_reference():
    rng = np.random.default_rng(2)
    a = rng.random((1, 3, 7, 9))
    b = rng.random((1, 3, 7, 9))
    lap = lambda x: np.stack([_laplacian_numpy(c) for c in x[0]])  # noqa: E731
    expected = np.mean(np.sqrt((lap(a) - lap(b)) ** 2 + 1e-6))
    got = EdgeLoss()(torch.from_numpy(a).float(), torch.from_numpy(b).float()).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_restoration_loss_weights_both_stages():
    torch.manual_seed(0)
    outs = [torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)]
    target = torch.rand(2, 3, 8, 8)
    char, edge = CharbonnierLoss(), EdgeLoss()
    expected = sum(char(o, target) for o in outs) + 0.05 * sum(edge(o, target) for o in outs)
    assert RestorationLoss()(outs, target).item() == pytest.approx(expected.item(), rel=1e-6)

"""Training losses: Charbonnier and the Laplacian-pyramid edge loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CharbonnierLoss(nn.Module):
    """``mean(sqrt(d^2 + eps^2))``: a smooth L1 that stays differentiable at zero."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = pred - target
        return torch.mean(torch.sqrt(diff * diff + self.eps * self.eps))


class EdgeLoss(nn.Module):
    """Charbonnier distance between the Laplacian (high-pass) bands of prediction and target.

    The low-pass is a 5x5 Gaussian, applied, decimated by two, re-expanded with the
    kept values times 4 on the even grid (zeros elsewhere), and applied again.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        k = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
        self.register_buffer("kernel", torch.outer(k, k).expand(channels, 1, 5, 5).clone(), persistent=False)
        self.charbonnier = CharbonnierLoss()

    def _gauss(self, img: torch.Tensor) -> torch.Tensor:
        img = F.pad(img, (2, 2, 2, 2), mode="replicate")
        return F.conv2d(img, self.kernel.to(img.dtype), groups=img.shape[1])

    def laplacian(self, img: torch.Tensor) -> torch.Tensor:
        low = self._gauss(img)
        expanded = torch.zeros_like(low)
        expanded[:, :, ::2, ::2] = low[:, :, ::2, ::2] * 4
        return img - self._gauss(expanded)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.charbonnier(self.laplacian(pred), self.laplacian(target))


class RestorationLoss(nn.Module):
    """The solution's loss over both stage outputs: ``sum(Charbonnier) + edge_weight * sum(Edge)``."""

    def __init__(self, edge_weight: float = 0.05) -> None:
        super().__init__()
        self.char = CharbonnierLoss()
        self.edge = EdgeLoss()
        self.edge_weight = edge_weight

    def forward(self, outputs: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        char = sum(self.char(out, target) for out in outputs)
        edge = sum(self.edge(out, target) for out in outputs)
        return char + self.edge_weight * edge

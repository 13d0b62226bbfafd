"""Training losses: Charbonnier, the Laplacian-pyramid edge loss, the clean-region and the near-light losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from utils.infer.keep_lights import CORE_LEVEL


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


# A pixel is clean when its target equals its input within one 8-bit level on every channel: the half level above
# it absorbs the round-off of images read as uint8 / 255.
CLEAN_TOLERANCE = 1.5 / 255


def clean_region_loss(output: torch.Tensor, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean |output - image|`` over the clean pixels (``CLEAN_TOLERANCE``), 0 where there are none.

    Where the target equals the input there is nothing to remove; the Charbonnier loss there is one term among many,
    and a small model pays it to shift colours far from the lights. This term prices any change there on its own."""
    clean = ((target - image).abs() <= CLEAN_TOLERANCE).all(dim=1, keepdim=True)
    change = (output - image).abs() * clean
    return change.sum() / (clean.sum() * output.shape[1]).clamp(min=1)


def clipped(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) float, 1 where a pixel's brightest channel reaches keep_lights' clipping level: without its
    opening, so a single clipped pixel counts too."""
    return (images.amax(dim=1, keepdim=True) >= (CORE_LEVEL - 0.5) / 255).float()


# A square this many pixels around each clipped pixel: the glow and the ring a model overshoots in
NEAR_LIGHT_RADIUS = 12


def near_light_loss(output: torch.Tensor, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean |output - target|`` within ``NEAR_LIGHT_RADIUS`` pixels (a square) of the input's clipped pixels, 0
    without any.

    Lamps, the glow clipped around them and the ring just outside are a few hundred pixels of a patch, so the
    mean loss hardly sees them; a small model then greys the lamps and leaves dark, bluish rings where it
    removed too much. This term prices the error there on its own."""
    cores = clipped(image)
    near = F.max_pool2d(cores, 2 * NEAR_LIGHT_RADIUS + 1, stride=1, padding=NEAR_LIGHT_RADIUS)
    error = (output - target).abs() * near
    return error.sum() / (near.sum() * output.shape[1]).clamp(min=1)


def lamp_core_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean relu(target - output)`` over the target's clipped light cores, 0 without any.

    The near-light loss prices the glow and the ring as much as the lamp, so raising it also teaches the model to
    dig harder around the lights; this term prices only a lamp left dimmer than its target, and only on the lamp."""
    cores = clipped(target)
    dimmed = (target - output).clamp(min=0) * cores
    return dimmed.sum() / (cores.sum() * output.shape[1]).clamp(min=1)


class RestorationLoss(nn.Module):
    """The solution's loss over both stage outputs: ``sum(Charbonnier) + edge_weight * sum(Edge)``; with a
    ``clean_weight`` above 0, ``+ clean_weight * sum(clean_region_loss)`` and with a ``light_weight`` above 0,
    ``+ light_weight * sum(near_light_loss)``, both of which need the input images; with a ``core_weight`` above 0,
    ``+ core_weight * sum(lamp_core_loss)``."""

    def __init__(
        self, edge_weight: float = 0.05, clean_weight: float = 0.0, light_weight: float = 0.0, core_weight: float = 0.0
    ) -> None:
        super().__init__()
        self.char = CharbonnierLoss()
        self.edge = EdgeLoss()
        self.edge_weight = edge_weight
        self.clean_weight = clean_weight
        self.light_weight = light_weight
        self.core_weight = core_weight

    @property
    def needs_inputs(self) -> bool:
        """Whether ``forward`` needs the input images: a term compares the outputs with them."""
        return bool(self.clean_weight or self.light_weight)

    def forward(
        self, outputs: list[torch.Tensor], target: torch.Tensor, image: torch.Tensor | None = None
    ) -> torch.Tensor:
        char = sum(self.char(out, target) for out in outputs)
        edge = sum(self.edge(out, target) for out in outputs)
        loss = char + self.edge_weight * edge
        if self.core_weight:
            loss = loss + self.core_weight * sum(lamp_core_loss(out, target) for out in outputs)
        if not self.needs_inputs:
            return loss
        if image is None:
            raise ValueError("a clean_weight or light_weight above 0 needs the input images")
        if self.clean_weight:
            loss = loss + self.clean_weight * sum(clean_region_loss(out, image, target) for out in outputs)
        if self.light_weight:
            loss = loss + self.light_weight * sum(near_light_loss(out, image, target) for out in outputs)
        return loss

"""The model wrapper that every tiling uses: eval mode, channels-last memory, optional autocast and compilation."""

from __future__ import annotations

import torch

from utils.core.runtime import autocast


class Restorer:
    """A loaded HINet that restores batches of tiles: eval mode, channels-last, optional autocast."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        amp: bool = False,
        channels_last: bool = True,
        compile: bool = False,
    ) -> None:
        self.device = device
        self.amp = amp
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device).eval().to(memory_format=self.memory_format)
        if compile:  # pays on long runs: tens of seconds of compilation against faster tiles (README)
            self.model = torch.compile(self.model)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with autocast(self.device, self.amp):
            return self.model(batch)[1].float()

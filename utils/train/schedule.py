"""The learning-rate schedule of the solution, as a closed form of the epoch.

Each phase warms up linearly from 0 over ``warmup`` epochs, then follows a cosine
from ``lr`` down to ``min_lr`` over ``epochs - warmup`` epochs. At the restart epoch
(58 for size 256, 25 for size 352) a fresh Adam starts a new phase at ``restart_lr``
with floor ``restart_min_lr``. The original stepped a warm-up wrapper around
``CosineAnnealingLR`` once per epoch; this function gives the same rate for every
epoch (within 1e-5 relative) without carrying scheduler state, so a resumed run
continues on exactly the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LRSchedule:
    lr: float = 5e-5
    min_lr: float = 1e-7
    epochs: int = 500
    warmup: int = 3
    restart_epoch: int | None = 58
    restart_lr: float = 1e-5
    restart_min_lr: float = 1e-8

    def phase_start(self, epoch: int) -> int:
        """First epoch of the phase that ``epoch`` (1-based) belongs to."""
        if self.restart_epoch is not None and epoch >= self.restart_epoch:
            return self.restart_epoch
        return 1

    def is_restart(self, epoch: int) -> bool:
        """True at the epoch where a fresh optimiser starts the second phase."""
        return self.restart_epoch is not None and epoch == self.restart_epoch and epoch > 1

    def __call__(self, epoch: int) -> float:
        """Learning rate used for training epoch ``epoch`` (1-based)."""
        start = self.phase_start(epoch)
        base, floor = (self.lr, self.min_lr) if start == 1 else (self.restart_lr, self.restart_min_lr)
        k = epoch - start
        if k <= self.warmup:
            return base * k / self.warmup
        t = (k - self.warmup - 1) / max(1, self.epochs - self.warmup)
        return floor + (base - floor) * (1 + math.cos(math.pi * t)) / 2

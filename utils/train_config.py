"""Training settings: the defaults, the per-size table, the checks, and what a resumed run may change.

What differed between the original's 256 and 352 trainers is data (``SIZE_DEFAULTS``):
the adaptive augmentation schedule and the epoch at which a fresh optimiser restarts the
learning-rate schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from utils.augment import parse_aug_schedule
from utils.errors import fail
from utils.patches import DATASET, output_dir
from utils.schedule import LRSchedule
from utils.tiling import BLENDS

# The per-size differences of the original trainers; sizes not listed use the 256 row.
SIZE_DEFAULTS = {
    256: {"aug_schedule": "1:1,3:3", "restart_epoch": 58},
    352: {"aug_schedule": "1:1,6:2,25:3", "restart_epoch": 25},
}
DEFAULT_PRETRAINED = "./pretrained_weight/HINet-GoPro.pth"
OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}


@dataclass
class TrainConfig:
    exp_num: int = 1
    tag: str = "Default"
    pretrained_path: str | None = DEFAULT_PRETRAINED
    data_path: str = "./data"
    dataset: str = DATASET
    fold: int = 0
    model_path: str = "results/"
    arch: str = "HINet"
    img_size: int = 256
    batch_size: int = 16
    pred_batch: int = 32
    epochs: int = 500
    initial_lr: float = 5e-5
    min_lr: float = 1e-7
    optimizer: str = "Adam"
    weight_decay: float = 0.0
    clipping: float = 1.0
    seed: int = 42
    patience: int = 30
    num_workers: int = 2
    wf: int = 64
    depth: int = 5
    aug_schedule: str | None = None
    restart_epoch: int | None = None
    restart_lr: float = 1e-5
    restart_min_lr: float = 1e-8
    device: str = "auto"
    val_blend: str = "mean"
    amp: bool = False
    channels_last: bool = True
    resume: bool = False
    overwrite: bool = False
    run_epochs: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        row = SIZE_DEFAULTS.get(self.img_size, SIZE_DEFAULTS[256])
        if self.aug_schedule is None:
            self.aug_schedule = row["aug_schedule"]
        if self.restart_epoch is None:
            self.restart_epoch = row["restart_epoch"]

    @property
    def exp_dir(self) -> Path:
        return Path(self.model_path) / f"{self.exp_num:03d}"

    @property
    def patch_dir(self) -> Path:
        return output_dir(self.data_path, self.fold, self.img_size, self.dataset)

    def schedule(self) -> LRSchedule:
        restart = self.restart_epoch if self.restart_epoch and self.restart_epoch > 0 else None
        return LRSchedule(self.initial_lr, self.min_lr, self.epochs, 3, restart, self.restart_lr, self.restart_min_lr)

    def model_config(self) -> dict:
        return dict(in_chn=3, wf=self.wf, depth=self.depth, relu_slope=0.2, hin_position_left=3, hin_position_right=4)


# A resumed run keeps these from its checkpoint; a flag that asks for another value is refused,
# since it would change the model, the data or the recipe half-way through.
FIXED_ON_RESUME = (
    "img_size", "wf", "depth", "data_path", "dataset", "fold", "seed", "batch_size", "initial_lr", "min_lr",
    "optimizer", "weight_decay", "clipping", "aug_schedule", "restart_epoch", "restart_lr", "restart_min_lr", "arch",
    "channels_last",
)  # fmt: skip
# These are kept from the checkpoint unless given again; the log says what a new value does.
CHANGEABLE_ON_RESUME = {
    "epochs": "the cosine schedule now ends at the new last epoch, so the learning rate moves to that curve",
    "patience": "early stopping counts against the new patience",
    "amp": "the precision of the remaining epochs changes",
    "val_blend": "validation PSNRs before and after are not strictly comparable",
}
# How this invocation runs, never taken from the checkpoint.
INVOCATION = ("run_epochs", "num_workers", "device", "pred_batch", "progress", "resume", "overwrite", "exp_num",
              "model_path", "tag", "pretrained_path")  # fmt: skip


def check_config(cfg: TrainConfig) -> None:
    """Every setting checked once, before anything is written; fails listing each problem."""
    problems = []
    for name in ("img_size", "batch_size", "pred_batch", "epochs", "wf", "depth", "patience"):
        if getattr(cfg, name) < 1:
            problems.append(f"--{name} must be at least 1 (got {getattr(cfg, name)})")
    if cfg.run_epochs is not None and cfg.run_epochs < 1:
        problems.append(f"--run_epochs must be at least 1 (got {cfg.run_epochs})")
    for name in ("num_workers", "restart_epoch", "fold"):
        if getattr(cfg, name) < 0:
            problems.append(f"--{name} must not be negative (got {getattr(cfg, name)})")
    for name in ("initial_lr", "clipping", "restart_lr"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            problems.append(f"--{name} must be a positive number (got {value})")
    for name in ("min_lr", "weight_decay", "restart_min_lr"):
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"--{name} must be zero or a positive number (got {value})")
    if not problems and cfg.min_lr > cfg.initial_lr:
        problems.append(f"--min_lr {cfg.min_lr:g} is above --initial_lr {cfg.initial_lr:g}")
    if cfg.depth >= 1 and cfg.img_size >= 1 and cfg.img_size % 2 ** (cfg.depth - 1):
        problems.append(
            f"--img_size {cfg.img_size} must be a multiple of {2 ** (cfg.depth - 1)} for a HINet of depth {cfg.depth}"
        )
    if cfg.arch != "HINet":
        problems.append(f"--arch {cfg.arch} is not available; the only architecture is HINet")
    if cfg.optimizer not in OPTIMIZERS:
        problems.append(f"--optimizer {cfg.optimizer} is not available; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.val_blend not in BLENDS:
        problems.append(f"--val_blend must be one of {', '.join(BLENDS)}")
    if problems:
        fail("; ".join(problems) + ".")
    parse_aug_schedule(cfg.aug_schedule)


def merge_resumed(cfg: TrainConfig, stored: dict, given: set[str]) -> list[str]:
    """Take a resumed run's settings from its checkpoint, except the changeable ones the user gave.

    Refuses, in one sentence, every given flag that would change a fixed setting. Returns a
    log line per setting that changed.
    """
    clashes = [
        f"--{name} {getattr(cfg, name)} (the run has {stored.get(name)})"
        for name in FIXED_ON_RESUME
        if name in given and name in stored and getattr(cfg, name) != stored[name]
    ]
    if clashes:
        fail(
            f"--resume continues {cfg.exp_dir} as it was made, but {', '.join(clashes)} would change it; drop those "
            f"flags, or start a new run (another --exp_num, --pretrained_path {cfg.exp_dir / 'last.pth'} for its weights)."
        )
    notes = []
    for f in fields(cfg):
        if f.name not in stored or f.name in INVOCATION:
            continue
        if f.name in CHANGEABLE_ON_RESUME and f.name in given:
            if getattr(cfg, f.name) != stored[f.name]:
                why = CHANGEABLE_ON_RESUME[f.name]
                notes.append(f"changed on resume: --{f.name} {stored[f.name]} -> {getattr(cfg, f.name)} ({why})")
            continue
        setattr(cfg, f.name, stored[f.name])
    return notes

"""Training settings: the defaults, the per-size table, the checks, and what a resumed run may change.

What differed between the original's 256 and 352 trainers is data (``utils.recipe``):
the adaptive augmentation schedule and the epoch at which a fresh optimiser restarts the
learning-rate schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.hinet import OUTPUTS, HINetConfig
from utils.core.errors import fail
from utils.core.settings import (
    FIXED,
    INVOCATION,
    Allowed,
    Form,
    PerSize,
    Resume,
    check_ranges,
    fill_from_recipe,
    setting,
)
from utils.core.tiling import BLENDS
from utils.data.augment import parse_aug_schedule
from utils.data.layout import DATASET, dataset_problem, patch_folder
from utils.recipe import RECIPE, recipe_for
from utils.train.schedule import LRSchedule

DEFAULT_PRETRAINED = "./pretrained_weight/HINet-GoPro.pth"
OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}
ARCHS = ("HINet",)


@dataclass
class TrainConfig:
    """Every training setting, once: default, type, range and help (main.py's flags and the README follow)."""

    exp_num: int = setting(
        1, "run folder number: the run goes to model_path/001 for 1", Allowed(minimum=0), resume=INVOCATION
    )
    tag: str = setting("Default", "free-text label recorded in the log", resume=INVOCATION)
    pretrained_path: str | None = setting(
        DEFAULT_PRETRAINED,
        "HINet weights to start from (public HINet-GoPro.pth); 'none' for random weights",
        resume=INVOCATION,
    )
    data_path: str = setting("./data", "folder with train_original/ and the patches under train/", resume=FIXED)
    dataset: str = setting(DATASET, "patch folder name (make_patch.py --dataset)", new=True, resume=FIXED)
    fold: int = setting(0, "validation fold (make_patch.py --valid_fold)", Allowed(minimum=0), resume=FIXED)
    model_path: str = setting("results/", "where run folders go", resume=INVOCATION)
    arch: str = setting(
        "HINet", "architecture (kept for compatibility: HINet only)", Allowed(choices=ARCHS), resume=FIXED
    )
    img_size: int = setting(
        256,
        "training patch size (make_patch.py --resize); selects the row of the size table",
        Allowed(minimum=1),
        resume=FIXED,
    )
    batch_size: int = setting(16, "global batch, split over torchrun processes", Allowed(minimum=1), resume=FIXED)
    pred_batch: int = setting(32, "tiles per forward pass in validation", Allowed(minimum=1), resume=INVOCATION)
    epochs: int = setting(
        500,
        "epochs (the cosine schedule ends at the last)",
        Allowed(minimum=1),
        resume=Resume(
            "changeable", "the cosine schedule now ends at the new last epoch, so the learning rate moves to that curve"
        ),
    )
    steps_per_epoch: int | None = setting(
        None,
        "batches per epoch, drawn as shuffled passes over the patches",
        Allowed(minimum=1),
        new=True,
        form=Form(shown="one pass"),
        resume=FIXED,
    )
    initial_lr: float = setting(5e-5, "learning rate after the 3-epoch warm-up", Allowed(positive=True), resume=FIXED)
    min_lr: float = setting(1e-7, "floor of the cosine schedule", Allowed(minimum=0), resume=FIXED)
    optimizer: str = setting("Adam", "optimizer", Allowed(choices=OPTIMIZERS), resume=FIXED)
    weight_decay: float = setting(
        0.0,
        "applied to the optimizer; the original declared 1e-3 but never applied it, so 0 reproduces it",
        Allowed(minimum=0),
        resume=FIXED,
    )
    clipping: float = setting(1.0, "gradient-norm clipping", Allowed(positive=True), resume=FIXED)
    seed: int = setting(
        42, "seed of weights, data order and augmentation", Allowed(minimum=0, maximum=2**32 - 1), resume=FIXED
    )
    patience: int = setting(
        30,
        "early stop after this many epochs without improvement",
        Allowed(minimum=1),
        resume=Resume("changeable", "early stopping counts against the new patience"),
    )
    num_workers: int = setting(2, "data-loading worker processes", Allowed(minimum=0), resume=INVOCATION)
    wf: int = setting(64, "HINet width (channels of the first level)", Allowed(minimum=1), new=True, resume=FIXED)
    depth: int = setting(5, "HINet depth (U-Net levels)", Allowed(minimum=1), new=True, resume=FIXED)
    output: str = setting(
        "sigmoid",
        "model output: sigmoid (the original), linear (input + residual, no dark collapse) or subtract (input "
        "less a non-negative flare in linear light: never brighter than the input)",
        Allowed(choices=OUTPUTS),
        new=True,
        resume=FIXED,
    )
    clean_weight: float = setting(
        0.0,
        "weight of a loss on the mean absolute change of the output from the input where the target equals the "
        "input (within one 8-bit level); 0 keeps the original loss",
        Allowed(minimum=0),
        new=True,
        resume=FIXED,
    )
    light_weight: float = setting(
        0.0,
        "weight of a loss on the mean absolute error in a 25-pixel square around each clipped pixel of the input "
        "(lamps, their glow and the ring around them); 0 keeps the original loss",
        Allowed(minimum=0),
        new=True,
        resume=FIXED,
    )
    core_weight: float = setting(
        0.0,
        "weight of a loss on how much dimmer than the target the output leaves the target's clipped lamps (only "
        "there); 0 keeps the original loss",
        Allowed(minimum=0),
        new=True,
        resume=FIXED,
    )
    aug_schedule: str | None = setting(
        PerSize("aug_schedule"),
        "EPOCH:VERSION list of augmentation versions ("
        + "; ".join(f"{k}: {row.aug_schedule}" for k, row in RECIPE.items())
        + ")",
        new=True,
        resume=FIXED,
    )
    restart_epoch: int | None = setting(
        PerSize("restart_epoch"),
        "epoch of the fresh-optimiser restart at 1e-5 ("
        + ", ".join(f"{k}: {row.restart_epoch}" for k, row in RECIPE.items())
        + "); 0 = none",
        Allowed(minimum=0),
        new=True,
        resume=FIXED,
    )
    restart_lr: float = field(default=1e-5, metadata={"positive": True, "resume": "fixed"})
    restart_min_lr: float = field(default=1e-8, metadata={"minimum": 0, "resume": "fixed"})
    device: str = setting("auto", "auto (CUDA if available), cpu, cuda or cuda:N", new=True, resume=INVOCATION)
    val_blend: str = setting(
        "mean",
        "validation tiles: mean (original) or window (no seams)",
        Allowed(choices=BLENDS),
        new=True,
        resume=Resume("changeable", "validation PSNRs before and after are not strictly comparable"),
    )
    amp: bool = setting(
        False,
        "mixed precision (bf16 where supported, else fp16 with scaling)",
        new=True,
        resume=Resume("changeable", "the precision of the remaining epochs changes"),
    )
    channels_last: bool = setting(
        True, "keep the default memory format instead of channels-last", new=True, resume=FIXED
    )
    resume: bool = setting(False, "continue the run of this exp_num from its last.pth", new=True, resume=INVOCATION)
    overwrite: bool = setting(False, "replace an existing run of the same exp_num", new=True, resume=INVOCATION)
    run_epochs: int | None = setting(
        None,
        "stop after this many epochs in this invocation (time-limited jobs)",
        Allowed(minimum=1),
        new=True,
        resume=INVOCATION,
    )
    progress: bool = setting(True, "hide progress bars", new=True, resume=INVOCATION)

    def __post_init__(self) -> None:
        fill_from_recipe(self, recipe_for(self.img_size))

    @property
    def exp_dir(self) -> Path:
        return Path(self.model_path) / f"{self.exp_num:03d}"

    @property
    def patch_dir(self) -> Path:
        return patch_folder(self.data_path, self.fold, self.img_size, self.dataset)

    def schedule(self) -> LRSchedule:
        restart = self.restart_epoch if self.restart_epoch and self.restart_epoch > 0 else None
        return LRSchedule(self.initial_lr, self.min_lr, self.epochs, 3, restart, self.restart_lr, self.restart_min_lr)

    def model_config(self) -> HINetConfig:
        return HINetConfig(wf=self.wf, depth=self.depth, output=self.output)


def check_config(cfg: TrainConfig) -> None:
    """Every setting checked once, before anything is written; fails listing each problem."""
    problems = check_ranges(cfg)
    if not problems and cfg.min_lr > cfg.initial_lr:
        problems.append(f"--min_lr {cfg.min_lr:g} is above --initial_lr {cfg.initial_lr:g}")
    if problem := dataset_problem(cfg.dataset):
        problems.append(problem)
    if problems:
        fail("; ".join(problems) + ".")
    parse_aug_schedule(cfg.aug_schedule)

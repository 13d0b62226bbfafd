"""Resuming a run: what last.pth must hold, each field checked, and which settings a resumed run may change."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from models.checkpoint import (
    check_architecture,
    check_finite,
    is_int,
    read_checkpoint,
)
from models.hinet import HINetConfig
from utils.core.errors import fail
from utils.train.config import TrainConfig

RESUME_KEYS = ("config", "rng", "state_dict", "optimizer", "epoch", "best_psnr", "best_epoch", "early_stop")


@dataclass
class TrainState:
    """What the loop carries from epoch to epoch, saved in and restored from ``last.pth``."""

    epoch: int = 0
    best_psnr: float = -math.inf
    best_epoch: int = 0
    early_stop: int = 0

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> TrainState:
        return cls(**{f.name: ckpt[f.name] for f in fields(cls)})


def read_resume_state(cfg: TrainConfig) -> dict:
    """``last.pth`` of the run, checked to hold everything a resumed run needs."""
    path = cfg.exp_dir / "last.pth"
    if not path.is_file():
        fail(f"--resume: {path} does not exist; start the run without --resume.")
    state = read_checkpoint(path)
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        fail(
            f"--resume: {path} is not a resumable checkpoint of this project (it lacks {', '.join(missing)}); "
            f"to start from its weights, begin a new run with --pretrained_path {path} and another --exp_num."
        )
    check_resume_fields(state, cfg, path)
    return state


def check_resume_fields(state: dict, cfg: TrainConfig, path: Path) -> None:
    """Every field a resumed run uses, in range and of its type, each refused in one sentence."""

    def bad(field: str, value, wanted: str) -> None:
        shown = repr(value) if isinstance(value, (int, float, str, bool, type(None))) else type(value).__name__
        fail(
            f"--resume: {path} holds {field} {shown}, where {wanted}; the file is damaged or was edited, so "
            f"restore it from a copy or start a new run with another --exp_num."
        )

    config = state["config"]
    if not isinstance(config, dict):
        bad("config", config, "the run's settings (a mapping) belong")
    epochs = config.get("epochs", cfg.epochs)
    if not (is_int(epochs) and epochs >= 1):
        bad("config epochs", epochs, "a whole number of at least 1 belongs")
    epoch = state["epoch"]
    if not (is_int(epoch) and 0 <= epoch <= epochs):
        bad("epoch", epoch, f"the epochs done, a whole number from 0 to the run's {epochs} epochs, belongs")
    best = state["best_psnr"]
    if not (
        isinstance(best, (int, float))
        and not isinstance(best, bool)
        and (math.isfinite(best) or (epoch == 0 and best == -math.inf))
    ):
        bad("best_psnr", best, "a finite PSNR belongs (-inf only before the first epoch)")
    best_epoch = state["best_epoch"]
    if not (is_int(best_epoch) and 0 <= best_epoch <= epoch):
        bad("best_epoch", best_epoch, f"an epoch from 0 to {epoch} belongs")
    early_stop = state["early_stop"]
    if not (is_int(early_stop) and 0 <= early_stop <= epoch):
        bad("early_stop", early_stop, f"a count of epochs from 0 to {epoch} belongs")
    rng = state["rng"]
    if not (isinstance(rng, dict) and {"torch", "numpy", "python"} <= set(rng)):
        bad("rng", rng, "the random-number states (torch, numpy, python) belong")
    optimizer = state["optimizer"]
    if not (isinstance(optimizer, dict) and {"state", "param_groups"} <= set(optimizer)):
        bad("optimizer", optimizer, "the optimizer's state belongs")
    weights = state["state_dict"]
    if not (isinstance(weights, dict) and weights and all(isinstance(v, torch.Tensor) for v in weights.values())):
        bad("state_dict", weights, "the model's weights (named tensors) belong")
    check_finite(weights, path)
    # the model the run builds from its settings (its output head has no weights of its own)
    arch = HINetConfig(wf=config.get("wf", cfg.wf), depth=config.get("depth", cfg.depth))
    check_architecture(weights, arch, path)


def resume_policy(name: str) -> str:
    """What ``--resume`` does with the training setting ``name`` (declared where the setting is defined)."""
    return _POLICY[name]


_POLICY = {f.name: f.metadata.get("resume") for f in fields(TrainConfig)}


def merge_resumed(cfg: TrainConfig, stored: dict, given: set[str]) -> list[str]:
    """Take a resumed run's settings from its checkpoint, except the changeable ones the user gave.

    Refuses, in one sentence, every given flag that would change a fixed setting. Returns a
    log line per setting that changed. A run saved before a number or switch setting existed ran with its
    default: a loss weight added later stays off on resume.
    """
    older = {f.name: f.default for f in fields(cfg) if isinstance(f.default, (bool, int, float))}
    stored = older | stored
    clashes = [
        f"--{f.name} {getattr(cfg, f.name)} (the run has {stored[f.name]})"
        for f in fields(cfg)
        if f.name in given and resume_policy(f.name) == "fixed" and f.name in stored
        and getattr(cfg, f.name) != stored[f.name]
    ]  # fmt: skip
    if clashes:
        fail(
            f"--resume continues {cfg.exp_dir} as it was made, but {', '.join(clashes)} would change it; drop those "
            f"flags, or start a new run (another --exp_num, --pretrained_path {cfg.exp_dir / 'last.pth'} for its weights)."
        )
    notes = []
    for f in fields(cfg):
        if f.name not in stored or resume_policy(f.name) == "invocation":
            continue
        if resume_policy(f.name) == "changeable" and f.name in given:
            if getattr(cfg, f.name) != stored[f.name]:
                why = f.metadata["resume_note"]
                notes.append(f"changed on resume: --{f.name} {stored[f.name]} -> {getattr(cfg, f.name)} ({why})")
            continue
        setattr(cfg, f.name, stored[f.name])
    return notes

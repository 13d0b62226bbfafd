"""One trainer for every patch size: the solution's recipe, on a CPU, a GPU or many under torchrun.

What differed between the original's 256 and 352 trainers is data (``utils.recipe``):
the adaptive augmentation schedule and the epoch at which a fresh optimiser restarts
the learning-rate schedule. Everything else is shared. This file holds the run and its
loop; the checks before it, resuming, and one epoch's pieces have modules of their own.

Every epoch ends with ``last.pth`` (written atomically) holding all that a resumed run
needs; data order and augmentation are seeded per epoch, so a resumed run follows the
same path as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from models.hinet import HINet
from utils.core.checkpoint import (
    load_weights,
    save_checkpoint,
)
from utils.core.distributed import Dist, barrier, broadcast_flag, close, init_distributed, reduce_means
from utils.core.errors import fail, reported_write
from utils.core.log import get_logger
from utils.core.manifest import write_manifest
from utils.core.outputs import staged_dir
from utils.core.runtime import amp_dtype, configure_cuda, rng_state, seed_everything, set_rng_state
from utils.core.tables import write_csv
from utils.data.augment import aug_version_at, parse_aug_schedule
from utils.data.images import read_rgb
from utils.data.layout import INFO_FILE
from utils.metrics import psnr_uint8
from utils.train.checks import check_data, check_run_folder, hold_run_locks, run_files, starting_weights
from utils.train.config import TrainConfig, check_config
from utils.train.losses import RestorationLoss
from utils.train.resume import TrainState, merge_resumed, read_resume_state
from utils.train.steps import build_optimizer, make_loader, train_pass, validate

METRIC_COLUMNS = ["epoch", "lr", "aug_version", "train_loss", "train_psnr", "val_psnr", "seconds"]


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or early-stopped) run reports."""

    best_psnr: float
    best_epoch: int
    epochs_done: int
    minutes: float
    exp_dir: Path


def train(cfg: TrainConfig, given: set[str] | None = None) -> TrainResult:
    """Run (or resume) a training; returns a summary of the best epoch.

    ``given``: the settings the user named on the command line (a resumed run keeps the
    others from its checkpoint).
    """
    given = set(given or ())
    start = starting_weights(cfg, given)  # before the checks: fine-tuning takes the checkpoint's architecture
    check_config(cfg)
    d, device = init_distributed(cfg.device)
    configure_cuda(device)
    try:
        with ExitStack() as locks:
            if d.main:
                check_run_folder(cfg)
                hold_run_locks(locks, cfg)
            run = Run(cfg, d, device, given, start)
            return run.loop()
    finally:
        close(d)


class Run:
    """One training run: set up (every check before anything is written), then epoch after epoch."""

    def __init__(self, cfg: TrainConfig, d: Dist, device: torch.device, given: set[str], start: tuple) -> None:
        """``start``: (weights to fine-tune or None, note for the log), from ``starting_weights``."""
        self.cfg, self.d, self.device = cfg, d, device
        resume, resume_notes = self._resumed_state(given)
        self.train_pairs, self.val_pairs = check_data(cfg, d.world)
        seed_everything(cfg.seed)
        self.model, model_note = self._build_model(resume, start)
        self.model.to(device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.net = (
            DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
            if d.backend
            else self.model
        )
        self.schedule = cfg.schedule()
        self.aug_schedule = parse_aug_schedule(cfg.aug_schedule)
        self.criterion = RestorationLoss().to(device)
        fp16 = cfg.amp and device.type == "cuda" and amp_dtype(device) == torch.float16
        self.scaler = torch.amp.GradScaler(device.type, enabled=fp16)
        self.optimizer = build_optimizer(cfg, self.model, self.schedule(1))
        self.state = TrainState()
        self.rows: list[dict] = []
        if resume is not None:
            self.optimizer.load_state_dict(resume["optimizer"])
            self.state = TrainState.from_checkpoint(resume)
            set_rng_state(resume["rng"])
            self.rows = self._earlier_rows()
        self._open_run_folder(resume, resume_notes, model_note)
        barrier(d)  # every process waits until rank 0 has prepared the folder

    def _open_run_folder(self, resume: dict | None, resume_notes: list[str], model_note: str) -> None:
        """Rank 0: log the start; a new run's folder (log and epoch-0 ``last.pth``) is staged and moved into place."""
        cfg = self.cfg
        if not self.d.main:
            self.logger = get_logger("hinet.train", enabled=False)
        elif resume is not None:
            self.logger = get_logger("hinet.train", cfg.exp_dir / "log.log")
            self._log_start(resume, resume_notes, model_note)
            self.logger.info(
                f"resumed after epoch {self.state.epoch} (best {self.state.best_psnr:.4f} dB at epoch {self.state.best_epoch})"
            )
            self.record()
        else:
            with staged_dir(
                cfg.exp_dir, "run", "main.py", cfg.overwrite
            ) as stage:  # an earlier run stays until this succeeds
                self.logger = get_logger("hinet.train", stage / "log.log")
                self._log_start(resume, resume_notes, model_note)
                save_checkpoint(self.checkpoint(0, aug_version_at(self.aug_schedule, 1)), stage / "last.pth")

    def record(self) -> None:
        """Add what the run wrote so far to its folder's manifest (rank 0, after each write)."""
        write_manifest(self.cfg.exp_dir, "run", "main.py", run_files(self.cfg.img_size))

    def _resumed_state(self, given: set[str]) -> tuple[dict | None, list[str]]:
        cfg = self.cfg
        if not cfg.resume:
            return None, []
        resume = read_resume_state(cfg)
        notes = merge_resumed(cfg, resume["config"], given)
        check_config(cfg)
        if resume["epoch"] >= cfg.epochs or resume["early_stop"] >= cfg.patience:
            why = f"reached --epochs {cfg.epochs}" if resume["epoch"] >= cfg.epochs else "stopped early"
            fail(
                f"--resume: the run in {cfg.exp_dir} {why} at epoch {resume['epoch']}; pass a larger --epochs "
                f"(or --patience) to train further."
            )
        return resume, notes

    def _build_model(self, resume: dict | None, start: tuple) -> tuple[HINet, str]:
        """The model with its starting weights: resumed, fine-tuned (the checkpoint's architecture), or random."""
        model = HINet(self.cfg.model_config())
        if resume is not None:
            model.load_state_dict(resume["state_dict"])
            return model, f"resumed from {self.cfg.exp_dir / 'last.pth'}"
        state, note = start
        if state is not None:
            load_weights(model, state, self.cfg.pretrained_path)
        return model, note

    def _log_start(self, resume: dict | None, resume_notes: list[str], model_note: str) -> None:
        cfg, d, log = self.cfg, self.d, self.logger
        if cfg.amp and self.device.type == "cpu":
            log.info("--amp on the CPU uses bf16 autocast")
        info_file = cfg.patch_dir / INFO_FILE
        patches = json.loads(info_file.read_text())["patches_per_crop"] if info_file.is_file() else "no patch_info.json"
        backend = f" ({d.backend})" if d.backend else ""
        log.info(
            f"run {cfg.exp_dir}: {len(self.train_pairs)} training patches {patches}, {len(self.val_pairs)} validation "
            f"images, {d.world} process(es) on {self.device}{backend}"
        )
        log.info("config: " + json.dumps(asdict(cfg)))
        for note in resume_notes:
            log.info(note)
        if resume is None and cfg.epochs <= 6:
            log.warning(
                f"epoch 1 trains at learning rate 0 (the 3-epoch warm-up starts at 0, as the original did); "
                f"with --epochs {cfg.epochs} that is a large share of the run"
            )
        if d.main:
            baseline = np.mean([psnr_uint8(read_rgb(p.input), read_rgb(p.target)) for p in self.val_pairs])
            log.info(f"validation PSNR of the unrestored inputs: {baseline:.4f} dB (the score to beat)")
        (log.warning if "not found" in model_note else log.info)(model_note)

    def _earlier_rows(self) -> list[dict]:
        metrics_file = self.cfg.exp_dir / "metrics.csv"
        if not (self.d.main and metrics_file.is_file()):
            return []
        with open(metrics_file) as fh:
            return [r for r in csv.DictReader(fh) if int(r["epoch"]) <= self.state.epoch]

    def checkpoint(self, epoch_done: int, aug_version: int) -> dict:
        """Everything a resumed run needs (``rng`` is left out of ``<size>_best.pth``)."""
        return {
            "epoch": epoch_done,
            "state_dict": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_config": self.cfg.model_config().to_dict(),
            "img_size": self.cfg.img_size,
            "config": asdict(self.cfg),
            **{k: v for k, v in asdict(self.state).items() if k != "epoch"},
            "aug_version": aug_version,
            "scheduler": asdict(self.schedule),
            "rng": rng_state(),
        }

    def loop(self) -> dict:
        cfg, state = self.cfg, self.state
        last = cfg.epochs if cfg.run_epochs is None else min(cfg.epochs, state.epoch + cfg.run_epochs)
        start, epoch = time.time(), state.epoch + 1
        try:
            for epoch in range(state.epoch + 1, last + 1):
                t0 = time.time()
                lr, aug_version, losses = self.train_epoch(epoch)
                stop = self.end_epoch(epoch, lr, aug_version, losses, t0) if self.d.main else False
                state.epoch = epoch
                if broadcast_flag(stop, self.d, self.device):
                    break
        except KeyboardInterrupt:
            if self.d.main:
                self.logger.warning(
                    f"interrupted in epoch {epoch}; {cfg.exp_dir / 'last.pth'} holds epoch {state.epoch}: continue with --resume"
                )
                self.record()
            raise
        return self.summary((time.time() - start) / 60)

    def train_epoch(self, epoch: int) -> tuple[float, int, list[float]]:
        """Set the epoch's learning rate and augmentation, train one pass; (lr, version, [loss, PSNR])."""
        cfg = self.cfg
        if self.schedule.is_restart(epoch):
            self.optimizer = build_optimizer(cfg, self.model, self.schedule(epoch))
            self.logger.info(f"epoch {epoch}: fresh {cfg.optimizer}, schedule restarts at {cfg.restart_lr:g}")
        lr = self.schedule(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        aug_version = aug_version_at(self.aug_schedule, epoch)
        loader = make_loader(cfg, self.train_pairs, aug_version, epoch, self.d, self.device)
        desc = f"epoch {epoch}/{cfg.epochs} lr {lr:.2e} aug v{aug_version}"
        show = self.d.main and cfg.progress
        meters = train_pass(
            self.net, loader, self.optimizer, self.criterion, cfg, self.device, self.scaler, desc, show, epoch
        )
        return lr, aug_version, reduce_means(list(meters), self.d, self.device)

    def end_epoch(self, epoch: int, lr: float, aug_version: int, losses: list[float], t0: float) -> bool:
        """Rank 0: validate, keep the best, write metrics, curves and ``last.pth``; True to stop early."""
        cfg, state, exp = self.cfg, self.state, self.cfg.exp_dir
        then = f"continue with --resume ({exp / 'last.pth'} keeps epoch {epoch - 1})"  # after a failed write
        samples = cfg.steps_per_epoch * cfg.batch_size if cfg.steps_per_epoch else len(self.train_pairs)
        rate = samples / max(time.time() - t0, 1e-9)  # training samples a second, all processes, before validation
        val_psnr = validate(self.model, self.val_pairs, cfg, self.device)
        state.epoch = epoch
        if val_psnr > state.best_psnr:
            state.best_psnr, state.best_epoch, state.early_stop = val_psnr, epoch, 0
            best = {k: v for k, v in self.checkpoint(epoch, aug_version).items() if k != "rng"}
            save_checkpoint(best, exp / f"{cfg.img_size}_best.pth", then)
        else:
            state.early_stop += 1
        seconds = time.time() - t0
        train_loss, train_psnr = losses
        self.rows.append({
            "epoch": epoch, "lr": f"{lr:.6e}", "aug_version": aug_version, "train_loss": f"{train_loss:.6f}",
            "train_psnr": f"{train_psnr:.4f}", "val_psnr": f"{val_psnr:.4f}", "seconds": f"{seconds:.1f}",
        })  # fmt: skip
        write_csv(exp / "metrics.csv", self.rows, METRIC_COLUMNS, then=then)
        from utils.plots import plot_curves  # matplotlib loads on the first epoch's end, not at start-up

        with reported_write(exp / "curves.png", then):
            plot_curves(self.rows, exp / "curves.png")
        save_checkpoint(self.checkpoint(epoch, aug_version), exp / "last.pth", then)
        mark = " *best*" if state.best_epoch == epoch else ""
        self.logger.info(
            f"epoch {epoch}/{cfg.epochs} lr {lr:.3e} aug v{aug_version} | train loss {train_loss:.4f} "
            f"PSNR {train_psnr:.2f} | val PSNR {val_psnr:.4f}{mark} | {seconds:.0f} s, {rate:.1f} samples/s in training"
        )
        stop = state.early_stop >= cfg.patience
        if stop:
            self.logger.info(f"early stop: no improvement in {cfg.patience} epochs")
        self.record()
        return stop

    def summary(self, minutes: float) -> TrainResult:
        state, cfg = self.state, self.cfg
        if self.d.main:
            self.logger.info(
                f"best validation PSNR {state.best_psnr:.4f} dB at epoch {state.best_epoch}; "
                f"{minutes:.2f} min; checkpoint {cfg.exp_dir / f'{cfg.img_size}_best.pth'}"
            )
            self.record()
        return TrainResult(state.best_psnr, state.best_epoch, state.epoch, minutes, cfg.exp_dir)

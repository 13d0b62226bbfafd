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
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from models.checkpoint import (
    load_weights,
    save_checkpoint,
)
from models.hinet import HINet
from utils.core.distributed import Dist, barrier, broadcast_flag, close, init_distributed, reduce_means
from utils.core.errors import fail, reported_write
from utils.core.log import get_logger, progress_bar
from utils.core.manifest import write_manifest
from utils.core.owned import owned_output
from utils.core.runtime import amp_dtype, autocast, configure_cuda, rng_state, seed_everything, set_rng_state
from utils.core.tables import write_csv
from utils.data.augment import aug_version_at, parse_aug_schedule
from utils.metrics import AverageMeter, psnr_tensor
from utils.train.checks import check_data, check_run_folder, hold_run_locks, run_files, run_output, starting_weights
from utils.train.config import TrainConfig, check_config
from utils.train.losses import RestorationLoss
from utils.train.resume import TrainState, merge_resumed, read_resume_state
from utils.train.run_log import log_start
from utils.train.steps import NonFiniteLoss, build_optimizer, epoch_failures, make_loader, validate

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
            run = Run(cfg, d, device, given, start, locks)
            return run.loop()
    finally:
        close(d)


class Run:
    """One training run: set up (every check before anything is written), then epoch after epoch."""

    def __init__(self, cfg: TrainConfig, d: Dist, device: torch.device, given: set[str], start: tuple, locks: ExitStack) -> None:  # fmt: skip
        """``start``: (weights to fine-tune or None, note for the log), from ``starting_weights``; ``locks``: held
        until the run ends (a new run's folder joins them)."""
        self.cfg, self.d, self.device, self.locks = cfg, d, device, locks
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
        self.criterion = RestorationLoss(
            clean_weight=cfg.clean_weight, light_weight=cfg.light_weight, core_weight=cfg.core_weight
        ).to(device)
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
            log_start(self, resume is not None, resume_notes, model_note)
            self.logger.info(
                f"resumed after epoch {self.state.epoch} (best {self.state.best_psnr:.4f} dB at epoch {self.state.best_epoch})"
            )
            self.record()
        else:
            with owned_output(run_output(cfg), hold=self.locks) as stage:  # an earlier run stays until this succeeds
                self.logger = get_logger("hinet.train", stage / "log.log")
                log_start(self, resume is not None, resume_notes, model_note)
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

    def loop(self) -> TrainResult:
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
        """One pass over the epoch's batches at its learning rate and augmentation; (lr, version, [loss, PSNR])."""
        cfg, device, optimizer = self.cfg, self.device, self._epoch_optimizer(epoch)
        lr, aug_version = self.schedule(epoch), aug_version_at(self.aug_schedule, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loader = make_loader(cfg, self.train_pairs, aug_version, epoch, self.d, device)
        desc = f"epoch {epoch}/{cfg.epochs} lr {lr:.2e} aug v{aug_version}"
        bar = progress_bar(loader, desc=desc, unit="batch", leave=False, show=self.d.main and cfg.progress)
        memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        losses, psnrs = AverageMeter(), AverageMeter()
        self.net.train()
        with epoch_failures(cfg, epoch):
            for step, (images, targets) in enumerate(bar):
                images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                targets = targets.to(device, non_blocking=True)
                optimizer.zero_grad(set_to_none=True)
                with autocast(device, cfg.amp):
                    outputs = self.net(images)
                outputs = [o.float() for o in outputs]
                if self.criterion.needs_inputs:
                    loss = self.criterion(outputs, targets, images)
                else:
                    loss = self.criterion(outputs, targets)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clipping)
                psnr = psnr_tensor(outputs[1].detach(), targets)
                # The step's one host synchronisation: the finiteness check needs its values before the update.
                loss_value, norm_value, psnr_value = torch.stack([loss.detach(), grad_norm, psnr]).float().tolist()
                if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                    raise NonFiniteLoss(f"step {step + 1}: loss {loss_value}, gradient norm {norm_value}")
                self.scaler.step(optimizer)
                self.scaler.update()
                losses.update(loss_value, images.shape[0])
                psnrs.update(psnr_value, images.shape[0])
                bar.set_postfix(loss=f"{losses.avg:.4f}", psnr=f"{psnrs.avg:.2f}")
        return lr, aug_version, reduce_means([losses, psnrs], self.d, device)

    def _epoch_optimizer(self, epoch: int) -> torch.optim.Optimizer:
        """The optimiser, made afresh at the recipe's restart epoch."""
        if self.schedule.is_restart(epoch):
            self.optimizer = build_optimizer(self.cfg, self.model, self.schedule(epoch))
            self.logger.info(f"epoch {epoch}: fresh {self.cfg.optimizer}, schedule restarts at {self.cfg.restart_lr:g}")
        return self.optimizer

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

"""One trainer for every patch size: the solution's recipe, on a CPU, a GPU or many under torchrun.

What differed between the original's 256 and 352 trainers is data (``SIZE_DEFAULTS``):
the adaptive augmentation schedule and the epoch at which a fresh optimiser restarts
the learning-rate schedule. Everything else is shared.

Every epoch ends with ``last.pth`` (written atomically) holding all that a resumed run
needs; data order and augmentation are seeded per epoch, so a resumed run follows the
same path as an uninterrupted one.
"""

from __future__ import annotations

import csv
import json
import math
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from models.hinet import HINet, HINetConfig
from utils.core.checkpoint import (
    check_architecture,
    check_finite,
    extract_state_dict,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from utils.core.errors import fail, one_line, reported_write
from utils.core.files import check_output_folder, staged_dir, write_manifest
from utils.core.locks import output_lock
from utils.core.log import get_logger, progress_bar
from utils.core.runtime import amp_dtype, autocast, configure_cuda, rng_state, seed_everything, set_rng_state
from utils.core.tables import write_csv
from utils.data.augment import aug_version_at, build_augmentation, parse_aug_schedule
from utils.data.datasets import FixedLengthSampler, PatchDataset, SeededSampler
from utils.data.folds import Pair, held_out_pairs, patch_pairs, read_fold_csv
from utils.data.images import from_uint8, image_size, read_rgb, to_uint8
from utils.data.layout import DATASET, FOLD_CSV, INFO_FILE
from utils.infer.submission import Restorer
from utils.infer.tiling import restore_image
from utils.metrics import AverageMeter, psnr_tensor, psnr_uint8
from utils.train.config import OPTIMIZERS, TrainConfig, check_config, merge_resumed
from utils.train.distributed import Dist, barrier, broadcast_flag, close, init_distributed, reduce_means
from utils.train.losses import RestorationLoss

METRIC_COLUMNS = ["epoch", "lr", "aug_version", "train_loss", "train_psnr", "val_psnr", "seconds"]


class NonFiniteLoss(RuntimeError):
    pass


def check_data(cfg: TrainConfig, world: int) -> tuple[list[Pair], list[Pair]]:
    """Patch pairs for training and full-size pairs for validation, with one-sentence errors."""
    make_cmd = (
        f"python make_patch.py --img_size {cfg.img_size} --stride {cfg.img_size // 2} --resize {cfg.img_size} "
        f"--valid_fold {cfg.fold} --save_path {cfg.data_path}"
        + (f" --dataset {cfg.dataset}" if cfg.dataset != DATASET else "")
    )
    if not (cfg.patch_dir / "input").is_dir() or not (cfg.patch_dir / "target").is_dir():
        fail(
            f"no patch folder {cfg.patch_dir}/input and /target for size {cfg.img_size}, fold {cfg.fold}; create it with: {make_cmd}"
        )
    original = Path(cfg.data_path) / "train_original"
    folds = read_fold_csv(original / FOLD_CSV)
    check_patch_info(cfg, folds, make_cmd)
    train = patch_pairs(cfg.patch_dir / "input", cfg.patch_dir / "target", folds, cfg.fold)
    odd = next((p.input for p in train if image_size(p.input) != (cfg.img_size, cfg.img_size)), None)
    if odd is not None:
        h, w = image_size(odd) or (0, 0)
        fail(
            f"patch {odd} is {w}x{h}, not {cfg.img_size}x{cfg.img_size}; re-make the patches with: {make_cmd} --overwrite"
        )
    val = held_out_pairs(folds, original, cfg.fold)
    missing = [str(p.input) for p in val if not p.input.is_file()] + [
        str(p.target) for p in val if not p.target.is_file()
    ]
    if missing:
        fail(f"{len(missing)} validation image(s) of fold {cfg.fold} are missing, e.g. {missing[0]}.")
    if not val:
        fail(f"fold {cfg.fold} has no validation images in {original / FOLD_CSV}.")
    if cfg.batch_size % world:
        fail(f"--batch_size {cfg.batch_size} is the global batch and must divide by the {world} processes.")
    return train, val


def check_patch_info(cfg: TrainConfig, folds, make_cmd: str) -> None:
    """The patch folder must come from the fold split now on disk, for this fold and size."""
    info_file = cfg.patch_dir / INFO_FILE
    if not info_file.is_file():
        return  # patches of an earlier release: the name-based pairing still guards against leaks
    try:
        made = json.loads(info_file.read_text())["settings"]
    except (ValueError, KeyError, TypeError):
        fail(f"{info_file} is damaged; re-make the patches with: {make_cmd} --overwrite")
    now = {"folds": int(folds["fold"].max()) + 1, "valid_fold": cfg.fold, "resize": cfg.img_size}
    differ = [f"{k} {made.get(k)} (now {v})" for k, v in now.items() if made.get(k) != v]
    if differ:
        fail(
            f"the patches in {cfg.patch_dir} were made with {', '.join(differ)}; validation images could be in "
            f"training, so re-make them with: {make_cmd} --folds {now['folds']} --overwrite"
        )


def make_loader(cfg: TrainConfig, pairs, aug_version: int, epoch: int, d: Dist, device: torch.device) -> DataLoader:
    """The epoch's loader; shuffling and augmentation are seeded by (seed, epoch, rank) alone.

    Each sample's augmentation is seeded by its position in this process's share of the epoch
    (``SeededSampler``), so any ``--num_workers`` gives the same batches.
    """
    epoch_seed = cfg.seed * 100_003 + epoch
    dataset = PatchDataset(pairs, build_augmentation(cfg.img_size, aug_version))
    generator = torch.Generator().manual_seed(epoch_seed * 1009 + d.rank)
    if cfg.steps_per_epoch:
        sampler = FixedLengthSampler(len(dataset), cfg.steps_per_epoch * cfg.batch_size, epoch_seed, d.rank, d.world)
    elif d.backend:
        sampler = DistributedSampler(dataset, d.world, d.rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size // d.world,
        sampler=SeededSampler(sampler, epoch_seed * 1009 + d.rank),
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=generator,
    )


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.optimizer](
        model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay
    )


def validate(model: torch.nn.Module, pairs, cfg: TrainConfig, device: torch.device) -> float:
    """Mean PSNR over full-size validation images, restored with tiles of ``img_size``, stride ``img_size // 2``."""
    restorer = Restorer(model, device, cfg.amp, cfg.channels_last)
    scores = []
    for pair in pairs:
        rgb = read_rgb(pair.input)
        image = from_uint8(rgb, device)
        restored = restore_image(
            restorer, image, cfg.img_size, cfg.img_size // 2, cfg.pred_batch, "all", blend=cfg.val_blend
        )
        scores.append(psnr_uint8(to_uint8(restored), read_rgb(pair.target)))
    model.train()
    return float(np.mean(scores))


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    criterion: torch.nn.Module,
    cfg: TrainConfig,
    device: torch.device,
    scaler: torch.amp.GradScaler,
    bar_desc: str,
    show: bool,
) -> tuple[AverageMeter, AverageMeter]:
    """One pass over the loader; returns this process's loss and PSNR meters. Raises NonFiniteLoss."""
    model.train()
    loss_meter, psnr_meter = AverageMeter(), AverageMeter()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    bar = progress_bar(loader, desc=bar_desc, unit="batch", leave=False, show=show)
    for step, (images, targets) in enumerate(bar):
        images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, cfg.amp):
            outputs = model(images)
        outputs = [o.float() for o in outputs]
        loss = criterion(outputs, targets)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clipping)
        if not (math.isfinite(loss.item()) and torch.isfinite(grad_norm)):
            raise NonFiniteLoss(f"step {step + 1}: loss {loss.item()}, gradient norm {grad_norm.item()}")
        scaler.step(optimizer)
        scaler.update()
        n = images.shape[0]
        loss_meter.update(loss.item(), n)
        psnr_meter.update(psnr_tensor(outputs[1], targets).item(), n)
        bar.set_postfix(loss=f"{loss_meter.avg:.4f}", psnr=f"{psnr_meter.avg:.2f}")
    return loss_meter, psnr_meter


def resolve_pretrained(cfg: TrainConfig, explicit: bool) -> tuple[str | None, str | None]:
    """(weights to start from or None, note for the log); a path the user gave must exist."""
    path = cfg.pretrained_path
    if not path or str(path).lower() == "none":
        return None, "starting from random weights (no --pretrained_path)"
    if not Path(path).is_file():
        if explicit:
            fail(f"--pretrained_path {path} does not exist; pass the path of HINet-GoPro.pth, or 'none'.")
        return None, f"{path} not found: starting from random weights (put HINet-GoPro.pth there to fine-tune it)"
    return path, f"initialised from {path}"


RESUME_KEYS = ("config", "rng", "state_dict", "optimizer", "epoch", "best_psnr", "best_epoch", "early_stop")


def check_run_folder(cfg: TrainConfig) -> None:
    """Before any work: a new run may go to its folder (a resumed one is checked by ``read_resume_state``)."""
    exp = cfg.exp_dir
    if cfg.resume:
        return
    if (exp / "last.pth").is_file() and not cfg.overwrite:
        fail(
            f"{exp} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --exp_num."
        )
    protected = {"patch folder": cfg.patch_dir, "data folder": Path(cfg.data_path) / "train_original"}
    check_output_folder(exp, "run folder", cfg.overwrite, "run", protected)


def hold_run_locks(stack: ExitStack, cfg: TrainConfig) -> None:
    """The run folder, exclusively, and the patches and fold table it reads, shared, for the whole run."""
    stack.enter_context(output_lock(cfg.exp_dir, "run folder"))
    stack.enter_context(output_lock(cfg.patch_dir, "patch folder", shared=True))
    stack.enter_context(output_lock(Path(cfg.data_path) / "train_original" / FOLD_CSV, "fold table", shared=True))


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


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    if not (_whole(epochs) and epochs >= 1):
        bad("config epochs", epochs, "a whole number of at least 1 belongs")
    epoch = state["epoch"]
    if not (_whole(epoch) and 0 <= epoch <= epochs):
        bad("epoch", epoch, f"the epochs done, a whole number from 0 to the run's {epochs} epochs, belongs")
    best = state["best_psnr"]
    if not (
        isinstance(best, (int, float))
        and not isinstance(best, bool)
        and (math.isfinite(best) or (epoch == 0 and best == -math.inf))
    ):
        bad("best_psnr", best, "a finite PSNR belongs (-inf only before the first epoch)")
    best_epoch = state["best_epoch"]
    if not (_whole(best_epoch) and 0 <= best_epoch <= epoch):
        bad("best_epoch", best_epoch, f"an epoch from 0 to {epoch} belongs")
    early_stop = state["early_stop"]
    if not (_whole(early_stop) and 0 <= early_stop <= epoch):
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
    arch = HINetConfig(wf=config.get("wf", cfg.wf), depth=config.get("depth", cfg.depth))
    check_architecture(weights, arch, path)  # the model the run builds from its settings


def train(cfg: TrainConfig, given: set[str] | None = None) -> dict:
    """Run (or resume) a training; returns a summary of the best epoch.

    ``given``: the settings the user named on the command line (a resumed run keeps the
    others from its checkpoint).
    """
    check_config(cfg)
    d, device = init_distributed(cfg.device)
    configure_cuda(device)
    try:
        with ExitStack() as locks:
            if d.main:
                check_run_folder(cfg)
                hold_run_locks(locks, cfg)
            run = Run(cfg, d, device, set(given or ()))
            return run.loop()
    finally:
        close(d)


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


class Run:
    """One training run: set up (every check before anything is written), then epoch after epoch."""

    def __init__(self, cfg: TrainConfig, d: Dist, device: torch.device, given: set[str]) -> None:
        self.cfg, self.d, self.device = cfg, d, device
        resume, resume_notes = self._resumed_state(given)
        self.train_pairs, self.val_pairs = check_data(cfg, d.world)
        seed_everything(cfg.seed)
        self.model = HINet(cfg.model_config())
        model_note = self._initial_weights(resume, given)
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
            with staged_dir(cfg.exp_dir, "run", "main.py") as stage:  # an earlier run stays until this succeeds
                self.logger = get_logger("hinet.train", stage / "log.log")
                self._log_start(resume, resume_notes, model_note)
                save_checkpoint(self.checkpoint(0, aug_version_at(self.aug_schedule, 1)), stage / "last.pth")

    def record(self) -> None:
        """Add what the run wrote so far to its folder's manifest (rank 0, after each write)."""
        names = ["log.log", "metrics.csv", "curves.png", "last.pth", f"{self.cfg.img_size}_best.pth"]
        write_manifest(self.cfg.exp_dir, "run", "main.py", names)

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

    def _initial_weights(self, resume: dict | None, given: set[str]) -> str:
        if resume is not None:
            self.model.load_state_dict(resume["state_dict"])
            return f"resumed from {self.cfg.exp_dir / 'last.pth'}"
        pretrained, note = resolve_pretrained(self.cfg, "pretrained_path" in given)
        if pretrained is not None:
            load_weights(self.model, extract_state_dict(read_checkpoint(pretrained), pretrained), pretrained)
        return note

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
        cfg, exp = self.cfg, self.cfg.exp_dir
        if self.schedule.is_restart(epoch):
            self.optimizer = build_optimizer(cfg, self.model, self.schedule(epoch))
            self.logger.info(f"epoch {epoch}: fresh {cfg.optimizer}, schedule restarts at {cfg.restart_lr:g}")
        lr = self.schedule(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        aug_version = aug_version_at(self.aug_schedule, epoch)
        loader = make_loader(cfg, self.train_pairs, aug_version, epoch, self.d, self.device)
        desc = f"epoch {epoch}/{cfg.epochs} lr {lr:.2e} aug v{aug_version}"
        try:
            meters = train_one_epoch(
                self.net,
                loader,
                self.optimizer,
                self.criterion,
                cfg,
                self.device,
                self.scaler,
                desc,
                self.d.main and cfg.progress,
            )
        except NonFiniteLoss as err:
            fail(
                f"training diverged in epoch {epoch} ({err}); {exp / 'last.pth'} keeps epoch {epoch - 1}. "
                f"A resumed run would repeat the same steps, so start a new run from those weights with a lower "
                f"learning rate: --pretrained_path {exp / 'last.pth'} --initial_lr {cfg.initial_lr / 10:g} "
                f"and another --exp_num."
            )
        except RuntimeError as err:
            if isinstance(err, torch.distributed.DistError):
                fail(
                    f"the torchrun process group failed in epoch {epoch} ({one_line(err)}); another process has "
                    f"probably stopped (see its output): end them all, then continue with --resume."
                )
            if "DataLoader worker" not in str(err):
                raise
            fail(
                f"a data-loading worker process died in epoch {epoch} (killed by the system, perhaps for lack of "
                f"memory); {exp / 'last.pth'} keeps epoch {epoch - 1}: continue with --resume, with fewer "
                f"--num_workers if memory is short."
            )
        return lr, aug_version, reduce_means(list(meters), self.d, self.device)

    def end_epoch(self, epoch: int, lr: float, aug_version: int, losses: list[float], t0: float) -> bool:
        """Rank 0: validate, keep the best, write metrics, curves and ``last.pth``; True to stop early."""
        cfg, state, exp = self.cfg, self.state, self.cfg.exp_dir
        then = f"continue with --resume ({exp / 'last.pth'} keeps epoch {epoch - 1})"  # after a failed write
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
        from utils.core.plots import plot_curves  # matplotlib loads on the first epoch's end, not at start-up

        with reported_write(exp / "curves.png", then):
            plot_curves(self.rows, exp / "curves.png")
        save_checkpoint(self.checkpoint(epoch, aug_version), exp / "last.pth", then)
        mark = " *best*" if state.best_epoch == epoch else ""
        self.logger.info(
            f"epoch {epoch}/{cfg.epochs} lr {lr:.3e} aug v{aug_version} | train loss {train_loss:.4f} "
            f"PSNR {train_psnr:.2f} | val PSNR {val_psnr:.4f}{mark} | {seconds:.0f} s"
        )
        stop = state.early_stop >= cfg.patience
        if stop:
            self.logger.info(f"early stop: no improvement in {cfg.patience} epochs")
        self.record()
        return stop

    def summary(self, minutes: float) -> dict:
        state, cfg = self.state, self.cfg
        if self.d.main:
            self.logger.info(
                f"best validation PSNR {state.best_psnr:.4f} dB at epoch {state.best_epoch}; "
                f"{minutes:.2f} min; checkpoint {cfg.exp_dir / f'{cfg.img_size}_best.pth'}"
            )
            self.record()
        return {
            "best_psnr": state.best_psnr,
            "best_epoch": state.best_epoch,
            "epochs_done": state.epoch,
            "minutes": minutes,
            "exp_dir": str(cfg.exp_dir),
        }

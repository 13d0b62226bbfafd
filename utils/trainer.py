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
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from models.hinet import HINet
from utils.augment import aug_version_at, build_augmentation, parse_aug_schedule
from utils.checkpoint import extract_state_dict, load_weights, read_checkpoint, save_checkpoint
from utils.data import FOLD_CSV, Pair, PatchDataset, fold_pairs, patch_pairs, read_fold_csv
from utils.errors import fail
from utils.files import check_output_folder, write_marker
from utils.image_io import from_uint8, image_size, read_rgb, to_uint8
from utils.inference import Restorer
from utils.logger import AverageMeter, get_logger, progress_bar
from utils.losses import RestorationLoss
from utils.metrics import psnr_tensor, psnr_uint8
from utils.patches import INFO_FILE
from utils.plots import plot_curves
from utils.runtime import amp_dtype, autocast, choose_device, configure_cuda, seed_everything
from utils.tiling import restore_image
from utils.train_config import OPTIMIZERS, TrainConfig, check_config, merge_resumed

METRIC_COLUMNS = ["epoch", "lr", "aug_version", "train_loss", "train_psnr", "val_psnr", "seconds"]


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # set when launched by torchrun, even with one process

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun (any number of processes); pick this process's device."""
    if "RANK" not in os.environ:
        return Dist(), choose_device(device_name)
    rank, world = int(os.environ["RANK"]), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank, world, local_rank, backend), device


def check_data(cfg: TrainConfig, world: int) -> tuple[list[Pair], list[Pair]]:
    """Patch pairs for training and full-size pairs for validation, with one-sentence errors."""
    make_cmd = (
        f"python make_patch.py --img_size {cfg.img_size} --stride {cfg.img_size // 2} --resize {cfg.img_size} "
        f"--valid_fold {cfg.fold} --save_path {cfg.data_path}"
        + (f" --dataset {cfg.dataset}" if cfg.dataset != "10Folds" else "")
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
    val = fold_pairs(folds, original / "train_input_img", original / "train_label_img", cfg.fold, True)
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


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    if info.dataset.transform is not None:
        info.dataset.transform.set_random_seed(info.seed % 2**32)


def make_loader(cfg: TrainConfig, pairs, aug_version: int, epoch: int, d: Dist, device: torch.device) -> DataLoader:
    """The epoch's loader; shuffling and augmentation are seeded by (seed, epoch, rank) alone."""
    epoch_seed = cfg.seed * 100_003 + epoch
    transform = build_augmentation(cfg.img_size, aug_version)
    transform.set_random_seed(epoch_seed * 1009 + d.rank)
    dataset = PatchDataset(pairs, transform)
    generator = torch.Generator().manual_seed(epoch_seed * 1009 + d.rank)
    if d.backend:
        sampler = DistributedSampler(dataset, d.world, d.rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=generator)
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size // d.world,
        sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker,
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


def _reduce_meters(meters: list[AverageMeter], d: Dist, device: torch.device) -> list[float]:
    """Sample-weighted means over all processes."""
    totals = torch.tensor([[m.total, m.count] for m in meters], dtype=torch.float64, device=device)
    if d.backend:
        dist.all_reduce(totals)
    return [float(t / c) if c else float("nan") for t, c in totals.tolist()]


def _broadcast_flag(flag: bool, d: Dist, device: torch.device) -> bool:
    if not d.backend:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


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


RUN_ENTRIES = ("log.log", "metrics.csv", "curves.png", "last.pth", "*_best.pth")
RESUME_KEYS = ("config", "rng", "state_dict", "optimizer", "epoch", "best_psnr", "best_epoch", "early_stop")


def prepare_exp_dir(cfg: TrainConfig) -> None:
    """Create the run folder, or clear one this project made; never touches anything else.

    A folder without ``last.pth`` (a first start that failed) is not a run and is cleared.
    """
    exp = cfg.exp_dir
    if cfg.resume:
        return
    if (exp / "last.pth").is_file() and not cfg.overwrite:
        fail(
            f"{exp} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --exp_num."
        )
    protected = {"patch folder": cfg.patch_dir, "data folder": Path(cfg.data_path) / "train_original"}
    real = check_output_folder(exp, "run folder", True, protected, RUN_ENTRIES)
    if real.exists():
        shutil.rmtree(real)
    real.mkdir(parents=True)
    write_marker(real, RUN_ENTRIES, "main.py")


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
    return state


def rng_state() -> dict:
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def train(cfg: TrainConfig, given: set[str] | None = None) -> dict:
    """Run (or resume) a training; returns a summary of the best epoch.

    ``given``: the settings the user named on the command line (a resumed run keeps the
    others from its checkpoint).
    """
    given = set(given or ())
    check_config(cfg)
    d, device = init_distributed(cfg.device)
    configure_cuda(device)
    try:
        return _train(cfg, d, device, given)
    finally:
        if d.backend and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainConfig, d: Dist, device: torch.device, given: set[str]) -> dict:
    exp = cfg.exp_dir
    resume_state, resume_notes = None, []
    if cfg.resume:
        resume_state = read_resume_state(cfg)
        resume_notes = merge_resumed(cfg, resume_state["config"], given)
        check_config(cfg)
        if resume_state["epoch"] >= cfg.epochs or resume_state["early_stop"] >= cfg.patience:
            why = f"reached --epochs {cfg.epochs}" if resume_state["epoch"] >= cfg.epochs else "stopped early"
            fail(
                f"--resume: the run in {exp} {why} at epoch {resume_state['epoch']}; pass a larger --epochs "
                f"(or --patience) to train further."
            )
    # Every check comes before anything is written.
    train_pairs, val_pairs = check_data(cfg, d.world)
    seed_everything(cfg.seed)
    model = HINet(**cfg.model_config())
    if resume_state is None:
        pretrained, model_note = resolve_pretrained(cfg, "pretrained_path" in given)
        if pretrained is not None:
            load_weights(model, extract_state_dict(read_checkpoint(pretrained), pretrained), pretrained)
    else:
        model.load_state_dict(resume_state["state_dict"])
        model_note = f"resumed from {exp / 'last.pth'}"
    if d.main:
        prepare_exp_dir(cfg)
    _broadcast_flag(True, d, device)  # wait until rank 0 has prepared the folder
    logger = get_logger("hinet.train", exp / "log.log", enabled=d.main)
    if cfg.amp and device.type == "cpu":
        logger.info("--amp on the CPU uses bf16 autocast")
    info_file = cfg.patch_dir / INFO_FILE
    patch_note = json.loads(info_file.read_text())["patches_per_crop"] if info_file.is_file() else "no patch_info.json"
    logger.info(
        f"run {exp}: {len(train_pairs)} training patches {patch_note}, {len(val_pairs)} validation images, "
        f"{d.world} process(es) on {device}" + (f" ({d.backend})" if d.backend else "")
    )
    logger.info("config: " + json.dumps(asdict(cfg)))
    for note in resume_notes:
        logger.info(note)
    if resume_state is None and cfg.epochs <= 6:
        logger.warning(
            f"epoch 1 trains at learning rate 0 (the 3-epoch warm-up starts at 0, as the original did); "
            f"with --epochs {cfg.epochs} that is a large share of the run"
        )
    if d.main:
        baseline = np.mean([psnr_uint8(read_rgb(p.input), read_rgb(p.target)) for p in val_pairs])
        logger.info(f"validation PSNR of the unrestored inputs: {baseline:.4f} dB (the score to beat)")

    (logger.warning if "not found" in model_note else logger.info)(model_note)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    ddp = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if d.backend
        else model
    )

    schedule = cfg.schedule()
    aug_schedule = parse_aug_schedule(cfg.aug_schedule)
    criterion = RestorationLoss().to(device)
    scaler = torch.amp.GradScaler(
        device.type, enabled=cfg.amp and device.type == "cuda" and amp_dtype(device) == torch.float16
    )
    optimizer = build_optimizer(cfg, model, schedule(1))
    state = {"epoch": 0, "best_psnr": -math.inf, "best_epoch": 0, "early_stop": 0}
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        state = {k: resume_state[k] for k in state}
        set_rng_state(resume_state["rng"])
        logger.info(
            f"resumed after epoch {state['epoch']} (best {state['best_psnr']:.4f} dB at epoch {state['best_epoch']})"
        )

    rows = []
    metrics_file = exp / "metrics.csv"
    if d.main and metrics_file.is_file():
        with open(metrics_file) as fh:
            rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= state["epoch"]]

    def checkpoint(epoch_done: int, aug_version: int) -> dict:
        return {
            "epoch": epoch_done,
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "model_config": cfg.model_config(),
            "img_size": cfg.img_size,
            "config": asdict(cfg),
            "best_psnr": state["best_psnr"],
            "best_epoch": state["best_epoch"],
            "early_stop": state["early_stop"],
            "aug_version": aug_version,
            "scheduler": asdict(schedule),
            "rng": rng_state(),
        }

    if d.main and resume_state is None:
        save_checkpoint(checkpoint(0, aug_version_at(aug_schedule, 1)), exp / "last.pth")
    first = state["epoch"] + 1
    last = cfg.epochs if cfg.run_epochs is None else min(cfg.epochs, state["epoch"] + cfg.run_epochs)
    start_time = time.time()
    epoch = first
    try:
        for epoch in range(first, last + 1):
            if state["early_stop"] >= cfg.patience:
                break
            t0 = time.time()
            if schedule.is_restart(epoch):
                optimizer = build_optimizer(cfg, model, schedule(epoch))
                logger.info(f"epoch {epoch}: fresh {cfg.optimizer}, schedule restarts at {cfg.restart_lr:g}")
            lr = schedule(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            aug_version = aug_version_at(aug_schedule, epoch)
            loader = make_loader(cfg, train_pairs, aug_version, epoch, d, device)
            desc = f"epoch {epoch}/{cfg.epochs} lr {lr:.2e} aug v{aug_version}"
            try:
                loss_m, psnr_m = train_one_epoch(
                    ddp, loader, optimizer, criterion, cfg, device, scaler, desc, d.main and cfg.progress
                )
            except NonFiniteLoss as err:
                fail(
                    f"training diverged in epoch {epoch} ({err}); {exp / 'last.pth'} keeps epoch {epoch - 1}. "
                    f"A resumed run would repeat the same steps, so start a new run from those weights with a lower "
                    f"learning rate: --pretrained_path {exp / 'last.pth'} --initial_lr {cfg.initial_lr / 10:g} "
                    f"and another --exp_num."
                )
            except RuntimeError as err:
                if "DataLoader worker" not in str(err):
                    raise
                fail(
                    f"a data-loading worker process died in epoch {epoch} (killed by the system, perhaps for lack of "
                    f"memory); {exp / 'last.pth'} keeps epoch {epoch - 1}: continue with --resume, with fewer "
                    f"--num_workers if memory is short."
                )
            train_loss, train_psnr = _reduce_meters([loss_m, psnr_m], d, device)
            stop = False
            if d.main:
                val_psnr = validate(model, val_pairs, cfg, device)
                if val_psnr > state["best_psnr"]:
                    state.update(best_psnr=val_psnr, best_epoch=epoch, early_stop=0)
                    best = {k: v for k, v in checkpoint(epoch, aug_version).items() if k != "rng"}
                    save_checkpoint(best, exp / f"{cfg.img_size}_best.pth")
                else:
                    state["early_stop"] += 1
                state["epoch"] = epoch
                seconds = time.time() - t0
                rows.append(
                    {
                        "epoch": epoch,
                        "lr": f"{lr:.6e}",
                        "aug_version": aug_version,
                        "train_loss": f"{train_loss:.6f}",
                        "train_psnr": f"{train_psnr:.4f}",
                        "val_psnr": f"{val_psnr:.4f}",
                        "seconds": f"{seconds:.1f}",
                    }
                )
                with open(metrics_file, "w", newline="") as fh:
                    writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
                    writer.writeheader()
                    writer.writerows(rows)
                plot_curves(rows, exp / "curves.png")
                save_checkpoint(checkpoint(epoch, aug_version), exp / "last.pth")
                mark = " *best*" if state["best_epoch"] == epoch else ""
                logger.info(
                    f"epoch {epoch}/{cfg.epochs} lr {lr:.3e} aug v{aug_version} | train loss {train_loss:.4f} "
                    f"PSNR {train_psnr:.2f} | val PSNR {val_psnr:.4f}{mark} | {seconds:.0f} s"
                )
                stop = state["early_stop"] >= cfg.patience
                if stop:
                    logger.info(f"early stop: no improvement in {cfg.patience} epochs")
            else:
                state["epoch"] = epoch
            if _broadcast_flag(stop, d, device):
                break
    except KeyboardInterrupt:
        if d.main:
            logger.warning(
                f"interrupted in epoch {epoch}; {exp / 'last.pth'} holds epoch {state['epoch']}: continue with --resume"
            )
        raise
    summary = {
        "best_psnr": state["best_psnr"],
        "best_epoch": state["best_epoch"],
        "epochs_done": state["epoch"],
        "minutes": (time.time() - start_time) / 60,
        "exp_dir": str(exp),
    }
    if d.main:
        logger.info(
            f"best validation PSNR {state['best_psnr']:.4f} dB at epoch {state['best_epoch']}; "
            f"{summary['minutes']:.2f} min; checkpoint {exp / f'{cfg.img_size}_best.pth'}"
        )
    return summary

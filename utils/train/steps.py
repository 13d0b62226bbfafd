"""One epoch's pieces: the seeded loader, the optimiser, the validation score and the failures told in one sentence."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler
from torch.utils.data.distributed import DistributedSampler

from utils.core.distributed import Dist
from utils.core.errors import fail, one_line
from utils.core.tiling import Tiling, restore_image
from utils.data.augment import build_augmentation
from utils.data.datasets import FixedLengthSampler, PatchDataset, SeededSampler
from utils.data.images import from_uint8, read_rgb, to_uint8
from utils.infer.restorer import Restorer
from utils.metrics import psnr_uint8
from utils.recipe import recipe_for
from utils.train.config import OPTIMIZERS, TrainConfig


class NonFiniteLoss(RuntimeError):
    """A step's loss or gradient norm is not finite: the weights would be ruined by the update."""


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


PSNR_CAP = 10 * np.log10(255.0**2)  # 48.13 dB: mean squared error 1, one 8-bit level everywhere


def validate(model: torch.nn.Module, pairs, cfg: TrainConfig, device: torch.device) -> float:
    """Mean PSNR over full-size validation images, restored with tiles of ``img_size`` at the recipe's stride.

    Each image's PSNR is capped at ``PSNR_CAP``, the score of an image one level off everywhere: beyond it 8-bit
    rounding, not restoration, decides. A flare-free pair (``--clean_share``) returned unchanged would otherwise
    score inf, or, capped at one value one level off, about 110 dB, and a model that returns its input exactly
    (an untrained ``--output subtract`` head does) would win every epoch on those pairs alone."""
    restorer = Restorer(model, device, cfg.amp, cfg.channels_last)
    tiling = Tiling(cfg.img_size, recipe_for(cfg.img_size).val_stride, cfg.pred_batch, "all", cfg.val_blend)
    scores = []
    for pair in pairs:
        rgb = read_rgb(pair.input)
        image = from_uint8(rgb, device)
        restored = restore_image(restorer, image, tiling)
        target = read_rgb(pair.target)
        score = psnr_uint8(to_uint8(restored), target)
        scores.append(min(score, PSNR_CAP))
    model.train()
    return float(np.mean(scores))


@contextmanager
def epoch_failures(cfg: TrainConfig, epoch: int) -> Iterator[None]:
    """The ways an epoch fails that a user can act on (divergence, a dead loading worker or torchrun process),
    each told in one sentence that says what ``last.pth`` keeps and how to go on."""
    exp = cfg.exp_dir
    try:
        yield
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

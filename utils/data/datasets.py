"""Training data sets and samplers: patches as tensors, augmentation seeded per sample, fixed-length epochs."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.data.folds import Pair
from utils.data.images import read_rgb


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H, W, C) array in [0, 1] to a contiguous (C, H, W) float tensor."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


def sample_seed(seed: int, position: int) -> int:
    """The augmentation seed of the sample at ``position`` of a stream seeded by ``seed`` (well mixed, 64 bits)."""
    return int(np.random.SeedSequence([seed % 2**64, position]).generate_state(1, np.uint64)[0])


class SeededSampler(torch.utils.data.Sampler):
    """The indices of ``sampler``, each with its own augmentation seed: ``(index, sample_seed(seed, position))``.

    A sample's augmentation then depends on (``seed``, its position in the epoch) alone, not on
    which worker process loads it or how many there are.
    """

    def __init__(self, sampler, seed: int) -> None:
        self.sampler, self.seed = sampler, seed

    def __iter__(self):
        return ((index, sample_seed(self.seed, position)) for position, index in enumerate(self.sampler))

    def __len__(self) -> int:
        return len(self.sampler)


class PatchDataset(Dataset):
    """Training patches as float RGB in [0, 1]; the augmentation sees the input as ``image`` and the target as ``mask``.

    An item is an index, or ``(index, seed)`` (``SeededSampler``): the augmentation then draws
    from random generators made from that seed alone, whatever process loads the sample.
    """

    def __init__(self, pairs: list[Pair], transform=None) -> None:
        self.pairs = pairs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx, seed = item if isinstance(item, tuple) else (item, None)
        pair = self.pairs[idx]
        image = read_rgb(pair.input).astype(np.float32) / 255.0
        target = read_rgb(pair.target).astype(np.float32) / 255.0
        if self.transform is not None:
            if seed is not None:  # one generator pair shared by every transform of the pipeline
                self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
            out = self.transform(image=image, mask=target)
            image, target = out["image"], out["mask"]
        return to_tensor(image), to_tensor(target)


class FixedLengthSampler(torch.utils.data.Sampler):
    """``total`` indices an epoch (one process's share of them), whatever the number of patches.

    Epochs of a fixed number of steps let runs on patch sets of different sizes train
    equally long (``--steps_per_epoch``). The indices are whole shuffled passes over the
    data, the last one cut short, seeded by (seed, epoch) alone and dealt out by rank.
    """

    def __init__(self, size: int, total: int, epoch_seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.total, self.seed, self.rank, self.world = size, total, epoch_seed, rank, world

    def indices(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed)
        passes = [torch.randperm(self.size, generator=generator) for _ in range(-(-self.total // self.size))]
        return torch.cat(passes)[: self.total][self.rank :: self.world].tolist()

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return len(range(self.rank, self.total, self.world))

"""Several processes under torchrun: joining the process group, and what the processes share."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.logger import AverageMeter
from utils.runtime import choose_device


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


def reduce_means(meters: list[AverageMeter], d: Dist, device: torch.device) -> list[float]:
    """Sample-weighted means over all processes."""
    totals = torch.tensor([[m.total, m.count] for m in meters], dtype=torch.float64, device=device)
    if d.backend:
        dist.all_reduce(totals)
    return [float(t / c) if c else float("nan") for t, c in totals.tolist()]


def broadcast_flag(flag: bool, d: Dist, device: torch.device) -> bool:
    """Rank 0's flag on every process (to stop all of them together)."""
    if not d.backend:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def barrier(d: Dist) -> None:
    """Wait for every process (for example until rank 0 has prepared the run folder)."""
    if d.backend == "nccl":
        dist.barrier(device_ids=[d.local_rank])
    elif d.backend:
        dist.barrier()


def close(d: Dist) -> None:
    if d.backend and dist.is_initialized():
        dist.destroy_process_group()

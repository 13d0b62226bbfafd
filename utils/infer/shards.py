"""test.py on several processes (torchrun): each restores a share of the images, rank 0 merges.

    torchrun --nproc_per_node 8 test.py --input_dir photos --output_dir restored --no_zip

Shares are balanced by pixel count (largest image first, each to the least-loaded process), so
one large photograph does not hold the others up. Every process writes its PNGs into rank 0's
staging folder (on several machines, a folder they all share); rank 0 alone fits the ensemble
weights from every process's evidence, writes ``metrics.csv``, ``ensemble.json`` and the zip in
the input order, and moves the folder into place only when every process succeeded. A process
that fails leaves a flag in the staging folder, so the others stop at their next image and all
end with its sentence. With the same threads per process (torchrun sets ``OMP_NUM_THREADS=1``)
the output is the same, byte for byte, as one process's: each image is restored by one process
exactly as alone, and every merge follows the input order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import torch

from utils.core.distributed import Dist, exchange
from utils.core.errors import UserError, fail, one_line

ADVICE = "end them all and run test.py again (raise HINET_DIST_TIMEOUT if an image takes longer)"
FAILED_FLAG = ".hinet-failed"  # in the staging folder: a process has failed, the others stop


def image_shares(pixels: list[int], world: int) -> list[list[int]]:
    """The indices of the images each of ``world`` processes restores, each share in input order."""
    loads, shares = [0] * world, [[] for _ in range(world)]
    for i in sorted(range(len(pixels)), key=lambda i: (-pixels[i], i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        shares[rank].append(i)
        loads[rank] += pixels[i]
    return [sorted(s) for s in shares]


def my_share(items: list, pixels: list[int], d: Dist) -> list:
    """This process's share of ``items`` (all of them in one process)."""
    return [items[i] for i in image_shares(pixels, d.world)[d.rank]]


def in_input_order(shares: list[list], items: list, pixels: list[int], world: int) -> list:
    """Per-item results gathered from every rank (``shares[rank]``, in share order), put back in input order."""
    merged: list = [None] * len(items)
    for indices, results in zip(image_shares(pixels, world), shares, strict=True):
        for i, result in zip(indices, results, strict=True):
            merged[i] = result
    return merged


def agree(problem: str | None, d: Dist, device: torch.device, what: str) -> None:
    """Every process fails with the first process's problem, if any has one (one process: its own)."""
    problems = exchange(problem, d, device, what, ADVICE)
    odd = next((rank for rank, p in enumerate(problems) if p is not None and not isinstance(p, str)), None)
    if odd is not None:
        fail(f"process {odd} answered in a form no process of this project sends while {what}; every process of "
             f"a torchrun group must run this project, on a network only they share.")  # fmt: skip
    first = next((p for p in problems if p), None)
    if first:
        fail(first if first.endswith(".") else first + ".")


def from_rank0(value: object, d: Dist, device: torch.device, what: str) -> object:
    """Rank 0's ``value`` on every process."""
    return exchange(value if d.main else None, d, device, what, ADVICE)[0]


@dataclass(frozen=True)
class UntilFailed:
    """A process's share of the images, which ends early once another process flags a failure in the staging
    folder; sized, so that a progress bar over it knows its total."""

    paths: list[Path]
    stage: Path

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Path]:
        for path in self.paths:
            if (self.stage / FAILED_FLAG).exists():
                return
            yield path


def share_results(work, d: Dist, device: torch.device, what: str, stage: Path | None = None) -> list:
    """Every process's result of ``work()`` on its share, by rank, on every process. A user's mistake in any
    process (a ``UserError``) ends all of them with its sentence; with ``stage``, the failing process first
    flags it there so that the others stop early. A bug is flagged, then raised."""
    try:
        result, problem = work(), None
    except UserError as err:
        result, problem = None, str(err)
        _flag(stage, d, problem)
    except BaseException as err:
        _flag(stage, d, one_line(err))
        raise
    gathered = exchange([result, problem], d, device, what, ADVICE)
    if not all(isinstance(g, list) and len(g) == 2 for g in gathered):
        agree(f"a process answered in a form no process of this project sends while {what}", d, device, what)
    agree(next((p for _, p in gathered if p), None), d, device, what)
    return [r for r, _ in gathered]


def _flag(stage: Path | None, d: Dist, problem: str) -> None:
    if d.backend and stage is not None:
        with suppress(OSError):  # the others then stop at the exchange that follows their share
            (stage / FAILED_FLAG).write_text(f"process {d.rank}: {problem}\n")

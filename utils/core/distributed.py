"""Several processes under torchrun: joining the process group, and what the processes share.

Every wait for the other processes has a limit: joining waits at most
``HINET_RENDEZVOUS_TIMEOUT`` seconds (default 300) for all of them to arrive, and each later
wait at most ``HINET_DIST_TIMEOUT`` seconds (default 1800: rank 0 validates while the others
wait). Joining, barriers and the end-of-epoch exchanges run in a helper thread or as
asynchronous work that the main thread polls, so Ctrl-C and SIGTERM end them at once; the
gradient exchanges inside the backward pass are bounded by the same limit, and a signal
there takes effect when they return.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from utils.core.errors import fail, one_line
from utils.core.runtime import choose_device
from utils.metrics import AverageMeter

RENDEZVOUS_TIMEOUT = 300.0  # seconds for every process to join (torchrun has started them all by then)
DIST_TIMEOUT = 1800.0  # seconds of any later wait for the others
_abandoned = False  # a wait timed out: the process group may hold unfinished work, so it is not torn down


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None  # set when launched by torchrun, even with one process

    @property
    def main(self) -> bool:
        return self.rank == 0


def timeout_setting(name: str, default: float) -> float:
    """Seconds from the environment variable ``name``, else ``default``; a bad value is one sentence."""
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        fail(f"{name}={text!r} is not a positive number of seconds; unset it or set, e.g., {name}={default:g}.")
    return value


def _env_int(name: str, minimum: int) -> int:
    text = os.environ[name]
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        fail(
            f"environment variable {name}={text!r} is not a whole number of at least {minimum}; launch with torchrun, which sets it."
        )
    return value


def launch_environment() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when launched by torchrun, None for a single process.

    A partial or inconsistent torchrun environment (say RANK without WORLD_SIZE, or no
    MASTER_ADDR) is refused with one sentence instead of a traceback or a wait.
    """
    present = [n for n in ("RANK", "WORLD_SIZE") if n in os.environ]
    if not present:
        return None
    advice = "launch with torchrun, which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT"
    if len(present) == 1:
        other = "WORLD_SIZE" if present[0] == "RANK" else "RANK"
        fail(
            f"environment variable {present[0]} is set but {other} is not; {advice}, or unset {present[0]} to train in one process."
        )
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0) if "LOCAL_RANK" in os.environ else 0
    if rank >= world:
        fail(f"environment variable RANK={rank} is not below WORLD_SIZE={world}; {advice}.")
    missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(n)]
    if missing:
        fail(
            f"RANK and WORLD_SIZE are set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; {advice}."
        )
    port = _env_int("MASTER_PORT", 1)
    if port > 65535:
        fail(f"environment variable MASTER_PORT={port} is not a port number (1 to 65535); {advice}.")
    return rank, world, local_rank


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun (any number of processes); pick this process's device."""
    launch = launch_environment()
    if launch is None:
        return Dist(), choose_device(device_name)
    rank, world, local_rank = launch
    rendezvous_timeout = timeout_setting("HINET_RENDEZVOUS_TIMEOUT", RENDEZVOUS_TIMEOUT)
    timeout_setting("HINET_DIST_TIMEOUT", DIST_TIMEOUT)
    device = choose_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            fail(
                f"LOCAL_RANK {local_rank} has no CUDA device (this machine has {torch.cuda.device_count()}); start "
                f"at most that many processes per machine (torchrun --nproc_per_node)."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            _join(backend, rank, world, rendezvous_timeout)
        except (dist.DistError, ValueError, TimeoutError) as err:
            fail(
                f"process {rank} of {world} could not join the others at {os.environ['MASTER_ADDR']}:"
                f"{os.environ['MASTER_PORT']} within {rendezvous_timeout:g} s ({one_line(err).rstrip('.')}); "
                f"check that every process was started and can reach that address, or raise HINET_RENDEZVOUS_TIMEOUT."
            )
    return Dist(rank, world, local_rank, backend), device


def _join(backend: str, rank: int, world: int, rendezvous_timeout: float) -> None:
    """Connect to the store, wait for every process to check in, then form the group; the first two steps
    end within ``rendezvous_timeout``, and every step leaves the main thread free for signals."""
    deadline = time.monotonic() + rendezvous_timeout
    limit = timedelta(seconds=rendezvous_timeout)
    store = _in_thread(lambda: next(dist.rendezvous("env://", rank, world, timeout=limit))[0])
    # Under torchrun the store is the launcher's and is there at once; the processes meet here, polled, rather
    # than inside the backend's set-up, which would wait for a missing one as long as for any collective.
    key = f"hinet_joined_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    store.add(key, 1)
    while (arrived := store.add(key, 0)) < world:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{arrived} of the {world} processes arrived")
        time.sleep(0.05)
    timeout = timedelta(seconds=timeout_setting("HINET_DIST_TIMEOUT", DIST_TIMEOUT))
    prefixed = dist.PrefixStore("default_pg", store)
    _in_thread(lambda: dist.init_process_group(backend, store=prefixed, rank=rank, world_size=world, timeout=timeout))
    store.set_timeout(timeout)


def _in_thread(fn: Callable[[], object]) -> object:
    """Run a blocking call in a helper thread while the main thread stays ready for Ctrl-C and SIGTERM."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as err:  # handed to the main thread
            result["error"] = err

    thread = threading.Thread(target=target, name="hinet-dist-join", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
    if "error" in result:
        raise result["error"]
    return result.get("value")


RESUME_ADVICE = (
    "end them all, then continue with --resume (raise HINET_DIST_TIMEOUT if rank 0 needs longer to validate)"
)


def _wait(work, what: str, advice: str = RESUME_ADVICE) -> None:
    """Wait for asynchronous collective ``work``, polling so that signals are handled; a limit and a failure
    of the other processes are one sentence, ending with ``advice``."""
    global _abandoned
    limit = timeout_setting("HINET_DIST_TIMEOUT", DIST_TIMEOUT)
    deadline = time.monotonic() + limit + min(limit, 5.0)  # the backend's own limit normally ends it first
    while not (done := work.is_completed()) and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        if not done:
            raise TimeoutError(f"no answer in {limit:g} s")
        work.wait()
    except (RuntimeError, TimeoutError) as err:
        _abandoned = True
        fail(
            f"the other torchrun processes did not answer while {what} ({one_line(err).rstrip('.')}); one of them "
            f"has stopped or hangs (see its output): {advice}."
        )


def reduce_means(meters: list[AverageMeter], d: Dist, device: torch.device) -> list[float]:
    """Sample-weighted means over all processes."""
    totals = torch.tensor([[m.total, m.count] for m in meters], dtype=torch.float64, device=device)
    if d.backend:
        _wait(dist.all_reduce(totals, async_op=True), "adding up the epoch's training loss")
    return [float(t / c) if c else float("nan") for t, c in totals.tolist()]


def broadcast_flag(flag: bool, d: Dist, device: torch.device) -> bool:
    """Rank 0's flag on every process (to stop all of them together)."""
    if not d.backend:
        return flag
    t = torch.tensor([int(flag)], device=device)
    _wait(dist.broadcast(t, 0, async_op=True), "waiting for rank 0 to validate the epoch")
    return bool(t.item())


def barrier(d: Dist) -> None:
    """Wait for every process (for example until rank 0 has prepared the run folder)."""
    if d.backend == "nccl":
        _wait(dist.barrier(device_ids=[d.local_rank], async_op=True), "waiting at a barrier")
    elif d.backend:
        _wait(dist.barrier(async_op=True), "waiting at a barrier")


def close(d: Dist) -> None:
    """Leave the process group (not after a wait that timed out: tearing down unfinished work could hang)."""
    if d.backend and dist.is_initialized() and not _abandoned:
        dist.destroy_process_group()


MAX_PAYLOAD = 1 << 30  # bytes one process may send in an exchange: far above any share's results
_ARRAY_TYPES = ("float64", "float32", "int64", "int32", "bool")


def _plain(value: object) -> object:
    """JSON for the NumPy values the exchanges carry (arrays of evidence, scalar scores); nothing else."""
    if isinstance(value, np.ndarray) and value.dtype.name in _ARRAY_TYPES:
        return {"__array__": value.dtype.name, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be sent to the other processes")


def _from_plain(record: dict) -> object:
    if set(record) == {"__array__", "shape", "data"} and record["__array__"] in _ARRAY_TYPES:
        return np.asarray(record["data"], dtype=record["__array__"]).reshape(record["shape"])
    return record


def encode(obj: object) -> bytes:
    """``obj`` as JSON (tuples become lists; floats, NaN included, round-trip exactly)."""
    return json.dumps(obj, default=_plain).encode()


def decode(raw: bytes, rank: int) -> object:
    """What process ``rank`` sent, as plain data: data, never code, whatever a peer sends."""
    try:
        return json.loads(raw.decode(), object_hook=_from_plain)
    except (ValueError, TypeError, RecursionError) as err:
        fail(
            f"process {rank} sent something that is not this project's data ({one_line(err)}); every process of a "
            f"torchrun group must run this project, on a network only they share."
        )


def exchange(obj: object, d: Dist, device: torch.device, what: str, advice: str) -> list:
    """Every process's ``obj`` (plain data: JSON types and NumPy arrays), by rank, on every process; bounded
    and interruptible like every wait.

    Two all-gathers of bytes (their lengths, then the padded payloads), so nothing but tensors crosses
    the backend and no wait is unbounded; payloads are JSON, never pickles, so a process that joins the
    group can send wrong data but never run code in another. One process gets ``[obj]``.
    """
    if not d.backend:
        return [obj]
    payload = torch.frombuffer(bytearray(encode(obj)), dtype=torch.uint8).to(device)
    sizes = [torch.zeros(1, dtype=torch.int64, device=device) for _ in range(d.world)]
    _wait(dist.all_gather(sizes, torch.tensor([payload.numel()], device=device), async_op=True), what, advice)
    lengths = [int(s.item()) for s in sizes]
    odd = next((rank for rank, n in enumerate(lengths) if not 0 < n <= MAX_PAYLOAD), None)
    if odd is not None:
        fail(f"process {odd} announced {lengths[odd]} bytes while {what}, which no process of this project sends; "
             f"every process of a torchrun group must run this project, on a network only they share.")  # fmt: skip
    padded = torch.zeros(max(lengths), dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    chunks = [torch.empty(max(lengths), dtype=torch.uint8, device=device) for _ in range(d.world)]
    _wait(dist.all_gather(chunks, padded, async_op=True), what, advice)
    return [decode(c[:n].cpu().numpy().tobytes(), rank) for rank, (c, n) in enumerate(zip(chunks, lengths))]

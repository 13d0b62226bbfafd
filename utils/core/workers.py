"""A process pool that notices a dead worker, so that no run waits forever.

``multiprocessing.Pool`` waits for ever when a worker is killed (by the out-of-memory
killer, say). Here each worker marks the task it works on in shared memory, the parent
polls with a timeout and checks that every worker is alive, and on any way out (an error, a dead
worker, Ctrl-C, SIGTERM) the workers are stopped before the caller cleans up.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from utils.core.errors import UserError

POLL_SECONDS = 0.5


class WorkerDied(RuntimeError):
    """A worker process ended without reporting its task (killed, or crashed in C code)."""

    def __init__(self, task_name: str | None, exitcode: int | None) -> None:
        self.task_name = task_name
        self.exitcode = exitcode
        how = f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit status {exitcode}"
        on = f" while working on {task_name}" if task_name else ""
        super().__init__(f"a worker process died ({how}){on}")


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when its parent dies, so no orphan goes on writing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _work(fn: Callable, tasks: mp.Queue, results: mp.Queue, current, slot: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    while os.getppid() == parent:
        item = tasks.get()
        if item is None:
            return
        index, args = item
        current[slot] = index  # shared memory: the parent sees it even if this process is killed next
        try:
            out = ("done", index, fn(args))
        except Exception as err:  # reported to the parent, which decides
            # a user's problem is already a sentence; anything else keeps its type for the report
            text = str(err).rstrip(".") if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            out = ("error", index, text)
        results.put(out)
        current[slot] = -1


def run_tasks(
    fn: Callable[[Any], Any], tasks: Sequence[Any], processes: int, names: Sequence[str] | None = None
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, fn(task))`` as tasks finish, in ``processes`` forked workers.

    A task that raises yields ``(index, "ExcType: message")`` wrapped in ``TaskFailed``;
    a worker that dies raises ``WorkerDied`` naming its task. Workers are always stopped
    when the generator ends or is closed.
    """
    ctx = mp.get_context("fork")
    task_q, result_q = ctx.Queue(), ctx.Queue()
    for item in enumerate(tasks):
        task_q.put(item)
    count = max(1, min(processes, len(tasks)))
    for _ in range(count):
        task_q.put(None)
    current = ctx.Array("l", [-1] * count, lock=False)
    workers = [
        ctx.Process(target=_work, args=(fn, task_q, result_q, current, slot, os.getpid()), daemon=True)
        for slot in range(count)
    ]
    for w in workers:
        w.start()
    finished = 0
    try:
        while finished < len(tasks):
            try:
                kind, index, payload = result_q.get(timeout=POLL_SECONDS)
            except queue.Empty:
                for slot, w in enumerate(workers):
                    if w.exitcode is not None and (w.exitcode != 0 or current[slot] >= 0):
                        index = current[slot]
                        raise WorkerDied(names[index] if names and index >= 0 else None, w.exitcode) from None
                continue
            finished += 1
            yield index, (TaskFailed(payload) if kind == "error" else payload)
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()
        for w in workers:
            w.join(timeout=5)
        for q in (task_q, result_q):
            q.cancel_join_thread()
            q.close()


class TaskFailed(str):
    """The one-line error of a task that raised inside a worker."""

"""Swapping a finished output into place: built in a private folder, recorded in its manifest, exchanged atomically
with the earlier output, journalled so that a killed swap is finished or undone by the next run."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.core.errors import fail, reported_write
from utils.core.inplace import open_regular
from utils.core.locks import STAGE_RECORD, atomic_path, private_folder, stage_name_of
from utils.core.manifest import MANIFEST, file_record, has_files, ownership_problem, remove_output, write_manifest

_LIBC = ctypes.CDLL(None, use_errno=True)


_NOREPLACE, _EXCHANGE = 1, 2


def _rename(src: Path, dst: Path, flags: int) -> bool:
    """renameat2 with ``flags``; False where the system does not offer it (the caller falls back)."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot; fall back
        return False
    raise OSError(err, os.strerror(err), str(dst))


def swap_journal(path: Path) -> Path:
    """Where a replacement in progress is recorded, beside ``path``, until the earlier output is gone."""
    return path.parent / f".{path.name}{_SWAP_SUFFIX}"


_SWAP_SUFFIX = ".hinet-swap"


def put_in_place(stage: Path, path: Path, kind: str, overwrite: bool) -> None:
    """Move the finished ``stage`` onto ``path``: atomically swapped with an earlier output of ``kind`` (only with
    ``overwrite``), which is then removed entry by entry; never over anything else. Signals wait until it is
    done, and a journal beside ``path`` lets the next run finish a swap that a SIGKILL interrupted."""
    if path.exists() and (problem := ownership_problem(path, kind, trust_mtime=False)):
        fail(f"{path} {problem}; nothing was replaced.")  # it appeared or changed while we worked: keep it
    if has_files(path) and not overwrite:
        fail(f"{path} appeared while this run worked; nothing was replaced, pass --overwrite or choose another folder.")
    with signals_held():
        _move_into_place(stage, path, kind)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done, then interrupt as usual. Handlers, not a signal mask:
    a mask holds one thread only, and a signal that another (onnxruntime's, say) receives still runs the
    main thread's handler."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in _HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt


_HELD = (signal.SIGINT, signal.SIGTERM)


def _move_into_place(stage: Path, path: Path, kind: str) -> None:
    try:
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()  # an empty folder holds nothing to keep
        if not path.exists():
            if not _rename(stage, path, _NOREPLACE):
                if path.exists():
                    raise FileExistsError(path)
                os.rename(stage, path)
            return
        _swap(stage, path, kind)
    except FileExistsError:
        fail(f"{path} appeared while this run worked; nothing was replaced, choose another folder or run again.")


def _swap(stage: Path, path: Path, kind: str) -> None:
    """Exchange the finished ``stage`` with the earlier output at ``path`` and remove the earlier one, recorded
    in the journal from before the first rename until the earlier output is gone."""
    # The earlier output leaves the staging name at once: the staging folder's clean-up removes a tree, and
    # must never find the earlier output there, even if the removal below fails half-way.
    old = stage.with_name(stage.name + ".old")
    journal = swap_journal(path)
    record = {"stage": stage.name, "old": old.name, "kind": kind, "new": file_record(stage / MANIFEST)["sha256"]}
    with atomic_path(journal) as tmp:
        tmp.write_text(json.dumps(record) + "\n")
    if _rename(stage, path, _EXCHANGE):
        os.rename(stage, old)
    else:
        os.rename(path, old)
        os.rename(stage, path)
    _remove_earlier(old, path, kind)
    journal.unlink()


def _remove_earlier(old: Path, path: Path, kind: str) -> None:
    kept = remove_output(old, kind)
    if kept:  # something appeared in the earlier output as it was swapped out: keep it in sight
        aside = path.with_name(f"{path.name}.kept-{time.strftime('%Y%m%d-%H%M%S')}")
        os.rename(old, aside)
        print(f"warning: {aside} keeps {kept[0]!r}, which appeared while {path} was replaced", file=sys.stderr)


def finish_interrupted_swap(path: Path, kind: str) -> None:
    """Complete or undo a replacement of ``path`` that was killed (its journal is there); the lock is held.

    The new output is told from the earlier one by its manifest's hash. Swapped already: the earlier output
    is removed. Not yet: the earlier output stays (put back where the fallback had moved it aside) and the
    interrupted run's result is removed, as an interrupted run leaves the earlier result as it was. Only
    outputs that prove themselves ours (``ownership_problem``) are moved or removed; anything else stays.
    """
    record = _read_journal(path, kind)
    if record is None:
        return
    stage, old = path.parent / record["stage"], path.parent / record["old"]
    if _manifest_hash(path) == record["new"]:
        for earlier in (old, stage):
            if _ours(earlier, kind):
                _remove_earlier(earlier, path, kind)
    else:
        if not path.exists() and _ours(old, kind):
            os.rename(old, path)
        if _manifest_hash(stage) == record["new"] and _ours(stage, kind):
            remove_output(stage, kind)
    swap_journal(path).unlink()


def _ours(folder: Path, kind: str) -> bool:
    """A real folder holding an unchanged output of ``kind`` that this user's run wrote."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    return ownership_problem(folder, kind, trust_mtime=False) is None


def pending_swap(path: Path, kind: str) -> bool:
    """Whether a replacement of ``path`` was killed half-way: the next run into it finishes or undoes it."""
    return _read_journal(path, kind) is not None


def _read_journal(path: Path, kind: str) -> dict | None:
    """The journal beside ``path`` if it is one this project wrote for this output, else None."""
    try:
        fd = open_regular(swap_journal(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            return None  # another user's: nothing this run may act on
        record = json.loads(os.pread(fd, 4096, 0))
        stage = record["stage"]
        ok = isinstance(stage, str) and stage_name_of(stage) == path.name and record["old"] == stage + ".old"
        return record if ok and record["kind"] == kind and isinstance(record["new"], str) else None
    except (ValueError, TypeError, KeyError):
        return None
    finally:
        os.close(fd)


def _manifest_hash(folder: Path) -> str | None:
    manifest = folder / MANIFEST
    if folder.is_symlink() or manifest.is_symlink() or not manifest.is_file():
        return None
    return file_record(manifest)["sha256"]


@contextmanager
def staged_dir(path: str | Path, kind: str, written_by: str, overwrite: bool) -> Iterator[Path]:
    """Yield an empty private folder; it replaces ``path`` only if the block succeeds (an earlier output of
    ``kind`` only with ``overwrite``).

    Everything the block writes is recorded in the manifest of ``kind``. ``path`` must have
    passed ``owned.check_output`` and its lock be held (``owned_output`` does both). A failed run leaves the earlier
    ``path`` untouched and nothing half-written behind, not even parent folders this call made.
    """
    path = Path(path).resolve()
    finish_interrupted_swap(path, kind)
    new_parents = [p for p in path.parents if not p.exists()]  # innermost first
    try:
        with private_folder(path) as stage:
            yield stage
            (stage / STAGE_RECORD).unlink()
            with reported_write(path):
                write_manifest(stage, kind, written_by)
            put_in_place(stage, path, kind, overwrite)
    finally:
        if not path.exists():
            for parent in new_parents:
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()

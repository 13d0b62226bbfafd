"""Advisory locks and private staging folders, so that two runs never write into one place.

Every output (a submission, a patch set, a run folder, a fold CSV) has a lock file beside it,
``.<name>.hinet-lock``, that a run holds with ``fcntl.flock`` for as long as it works on that
output: exclusively while writing it, shared while reading it (training holds its patch set so).
The kernel drops a lock when its process dies, however it dies, so a lock is never stale and a
lock file left behind by a killed run is simply taken over by the next one. A second run that
finds a lock held refuses at once, naming the process that holds it; nothing waits.

Staging folders and temporary files are named ``.<name>.partial-<token>`` with a random
128-bit token, hold a record of that token, and stay locked by their process while it lives.
A later run removes such a folder only when its record names the same token and its lock
is free, so a name that merely looks like ours, or the live staging folder of a run in another
container sharing the volume, is never touched.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.core.errors import UserError, fail, one_line, reported_write
from utils.core.inplace import NotRegularFile, open_regular

STAGE_RECORD = ".hinet-stage"
_STAGE_NAME = re.compile(r"^\.(?P<name>.+)\.partial-(?P<token>[0-9a-f]{32})$")


_LOCK_SUFFIX = ".hinet-lock"


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}{_LOCK_SUFFIX}"


def is_lock_file(name: str) -> bool:
    """A name ``output_lock`` uses; such a file holds no data, and its last holder removes it."""
    return name.startswith(".") and name.endswith(_LOCK_SUFFIX)


def _holder(text: str) -> str:
    """The process a lock record names, in words."""
    try:
        info = json.loads(text)
        since = time.strftime("%H:%M:%S", time.localtime(info["since"]))
        return f"process {info['pid']} on {info['host']} (`{info['command']}`, since {since})"
    except (ValueError, KeyError, TypeError, OverflowError, OSError):
        return "another process"


_RECORD_KEYS = {"pid", "host", "since", "command"}
_MAX_RECORD = 4096


def _record_text(fd: int) -> str:
    """What a lock file holds, read once as far as a record can reach (one byte more tells a longer file)."""
    return os.pread(fd, _MAX_RECORD + 1, 0).decode(errors="replace")


def _is_record(text: str) -> bool:
    """Empty, or the record ``output_lock`` writes: a lock file of this project, never a user's file."""
    try:
        return not text or set(json.loads(text)) == _RECORD_KEYS
    except (ValueError, TypeError):
        return False


def _open_lock(path: Path, shared: bool) -> int | None:
    """A descriptor of the lock file ``path`` (None: a reader's lock beside read-only data, where no
    lock can be made and no writer can write either); a link, a folder or a user's file is refused."""
    try:
        fd = open_regular(path, os.O_RDWR | os.O_CREAT)
    except NotRegularFile as err:
        fail(f"{err}, where the lock file of this project belongs; remove it (or choose another folder).")
    except OSError as err:
        if shared and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return _open_existing_lock(path)
        reason = "a read-only file system" if err.errno == errno.EROFS else (err.strerror or one_line(err))
        fail(f"cannot write beside {path.parent} ({reason}); choose a folder this user can write.")
    if not _is_record(_record_text(fd)):
        os.close(fd)
        fail(f"{path} is not a lock file of this project (it holds other data); move it away, then run again.")
    return fd


def _open_existing_lock(path: Path) -> int | None:
    """A reader beside data it cannot write: share an existing lock file if there is one, else go without."""
    try:
        return open_regular(path, os.O_RDONLY)
    except (NotRegularFile, OSError):
        return None


def _take(path: Path, shared: bool) -> tuple[int | None, str]:
    """(an open, locked descriptor of ``path`` or None if none can exist, "") or (-1, the holder in words)."""
    for _ in range(20):  # the file may be unlinked by its last holder between our open and our lock
        fd = _open_lock(path, shared)
        if fd is None:
            return None, ""
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(_record_text(fd))
            os.close(fd)
            return -1, holder
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, ""
        os.close(fd)
    fail(f"could not take the lock {path}: it keeps being replaced; is another run starting and stopping there?")


def _release(path: Path, fd: int | None) -> None:
    """Unlock; the last holder removes the lock file (under an exclusive lock, so no one holds it then)."""
    if fd is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    except (BlockingIOError, FileNotFoundError):
        pass  # another reader still holds it, or it is gone already
    except OSError:
        pass  # a read-only folder: the lock file stays, harmless, and the next run takes it over
    finally:
        os.close(fd)


@contextmanager
def output_lock(target: str | Path, what: str, shared: bool = False) -> Iterator[None]:
    """Hold the lock of ``target`` for the block, or refuse in one sentence naming the process that holds it."""
    shown, target = target, Path(target).absolute()
    new_parents = [p for p in target.parents if not p.exists()]  # innermost first
    with reported_write(target.parent, then="run again"):
        target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(target)
    try:
        fd, holder = _take(path, shared)
    except UserError:
        _remove_empty(new_parents)
        raise
    if fd == -1:
        _remove_empty(new_parents)
        fail(
            f"{what} {shown} is in use by {holder}; wait until it finishes, or stop it "
            f"(a lock is freed as soon as its process ends)."
        )
    try:
        _write_record(path, fd)
        yield
    finally:
        _release(path, fd)
        _remove_empty(new_parents)


def _write_record(path: Path, fd: int | None) -> None:
    """Every holder writes who it is (of several readers, the last), so that a refused run names it."""
    if fd is None or not _writable(fd):  # a reader sharing a lock file it cannot write
        return
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:1000]  # a record stays far below _MAX_RECORD
    record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": command}
    with reported_write(path, then="run again"):
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)


def _writable(fd: int) -> bool:
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR


def _remove_empty(new_parents: list[Path]) -> None:
    """The folders a lock had to create, innermost first, where they hold nothing: a run that wrote
    nothing (or was refused) leaves no empty folders behind."""
    for parent in new_parents:
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


def lock_state(path: Path) -> str | None:
    """ "held" or "stale" for a lock file of this project, by whether a live process holds it; None for
    anything else. Ours means: a plain file named as ``output_lock`` names them that is empty or holds
    the record ``output_lock`` writes, so a user's file that only looks like one is never taken for ours.
    A stale lock file is the harmless leftover of a killed run: the next run takes it over."""
    if not is_lock_file(path.name):
        return None
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if not _is_record(_record_text(fd)):
            return None
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return "stale"
    except BlockingIOError:
        return "held"
    finally:
        os.close(fd)


def lock_holder(path: Path) -> str:
    """The process that holds the lock file ``path``, in words."""
    try:
        fd = open_regular(path, os.O_RDONLY)
    except OSError:
        return "another process"
    try:
        return _holder(_record_text(fd))
    finally:
        os.close(fd)


def stage_state(entry: Path) -> str | None:
    """ "live" or "stale" for a staging folder of this project (named ``.<name>.partial-<token>``,
    holding a record of that token), by whether a live process holds its lock; None for anything else."""
    match = _STAGE_NAME.match(entry.name)
    if match is None or entry.is_symlink() or not entry.is_dir():
        return None
    try:
        fd = open_regular(entry / STAGE_RECORD, os.O_RDONLY)
    except OSError:
        return None
    try:
        if os.pread(fd, 64, 0).decode(errors="replace").strip() != match["token"]:
            return None
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "stale"
    except BlockingIOError:
        return "live"  # its process is alive (perhaps in another container)
    finally:
        os.close(fd)


def stage_name_of(name: str) -> str | None:
    """The output a staging folder's name belongs to (``.<name>.partial-<token>`` gives ``<name>``), else None."""
    match = _STAGE_NAME.match(name)
    return match["name"] if match else None


def remove_stale(folder: Path) -> list[Path]:
    """Remove the staging folders in ``folder`` whose process is gone; returns what was removed."""
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if stage_state(entry) == "stale":
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextmanager
def private_folder(target: Path) -> Iterator[Path]:
    """A new hidden folder beside ``target`` that only this process uses; removed when the block ends.

    Its record stays locked while the block runs, so that ``remove_stale`` in another process
    leaves it alone; after a crash, the next run in the same folder removes it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent)
    token = secrets.token_hex(16)
    folder = target.with_name(f".{target.name}.partial-{token}")
    folder.mkdir()
    record = folder / STAGE_RECORD
    fd = os.open(record, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, token.encode())
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield folder
    finally:
        os.close(fd)
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path (same name, in a private folder beside ``path``); it replaces ``path``
    only if the block succeeds, so a crash mid-write leaves the previous file intact."""
    path = Path(path)
    with private_folder(path) as folder:
        tmp_path = folder / path.name
        yield tmp_path
        os.replace(tmp_path, path)

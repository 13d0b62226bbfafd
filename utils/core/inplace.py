"""Files written where they stand (lock files, logs appended to): never through a link.

Results are built in private staging folders and renamed into place, so no link planted under
their names is ever followed. The few files the project writes in place are opened here, without
following a symbolic link and only if they are plain files with no second name (a hard link), so
that a link planted by someone sharing the folder can never redirect a write to another file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from utils.core.errors import fail


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that never follows a symbolic link and only returns a plain file that has no other name.

    Every file the project writes in place (lock files, logs appended to) is opened through it, so
    that a link planted under that name (symbolic or hard) can never redirect a write to another file.
    A path that is a link, a folder, a FIFO or a device raises ``NotRegularFile`` before anything is
    written.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EISDIR):
            raise NotRegularFile(f"{path} is {'a symbolic link' if err.errno == errno.ELOOP else 'a folder'}") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "a file with another name (a hard link)" if stat.S_ISREG(info.st_mode) else "not a plain file"
        raise NotRegularFile(f"{path} is {what}")
    return fd


class NotRegularFile(OSError):
    """A path the project writes in place is a link, a folder, a FIFO or a device: never written through."""


def open_for_append(path: Path, what: str) -> int:
    """A descriptor appending to ``path`` (made if missing), or one sentence if a link or folder stands there."""
    try:
        return open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except NotRegularFile as err:
        fail(f"{err}, where {what} belongs; move it away, then run again.")

"""User-facing errors: one clear sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's input (flags, files, folders) that the user can fix."""


def fail(message: str) -> NoReturn:
    raise UserError(message)


def one_line(err: BaseException | str) -> str:
    """A library's error message as one line (its first), for quoting inside a sentence."""
    text = str(err).strip()
    first = text.splitlines()[0].strip() if text else ""
    return first or type(err).__name__


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def reported_write(path: str | Path, then: str = "run again") -> Iterator[None]:
    """Report a file that cannot be written (a full disk above all) in one sentence ending with ``then``."""
    try:
        yield
    except OSError as err:
        if err.errno in DISK_FULL:
            fail(f"could not write {path}: the disk is full; free some space, then {then}.")
        reason = err.strerror or one_line(err)
        fail(f"could not write {path} ({reason}); check the disk and the folder's permissions, then {then}.")

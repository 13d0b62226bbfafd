"""Safe file output: nothing half-written, nothing silently replaced."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash mid-write leaves the previous file intact and no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def has_files(folder: str | Path) -> bool:
    """True if ``folder`` exists and holds anything: a result that must not be silently replaced."""
    folder = Path(folder)
    return folder.is_dir() and any(folder.iterdir())


@contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty hidden sibling folder; it replaces ``path`` only if the block succeeds.

    A failed run leaves the earlier ``path`` untouched and nothing half-written behind,
    not even the parent folders this call had to create.
    """
    path = Path(path)
    stage = path.with_name(f".{path.name}.partial-{os.getpid()}")
    new_parents = [p for p in path.parents if not p.exists()]  # innermost first
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
        if path.exists():
            shutil.rmtree(path)
        os.replace(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not path.exists():
            for parent in new_parents:
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()

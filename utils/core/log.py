"""Progress bars on terminals and run logs in files."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from tqdm import tqdm

from utils.core.inplace import open_for_append


def progress_bar(iterable=None, *, show: bool = True, **kwargs) -> tqdm:
    """A tqdm bar on a terminal only: redirected to a file or a pipe, bars would fill logs with thousands of
    redrawn lines, and the scripts log one line per epoch or image there instead."""
    return tqdm(iterable, disable=not (show and sys.stderr.isatty()), **kwargs)


def get_logger(name: str = "hinet", log_file: str | Path | None = None, enabled: bool = True) -> logging.Logger:
    """A logger writing to stderr and, if given, to ``log_file`` (appending); silent when not ``enabled``."""
    logger = logging.getLogger(name)
    for old in logger.handlers:
        old.close()
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)
    fmt = logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if log_file is not None and enabled:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = _LogFile(log_file)
        handler.setFormatter(fmt)
        logger.addHandler(handler)
    return logger


class _LogFile(logging.FileHandler):
    """A log file appended to in place (a resumed run's): opened without following links, so that a link
    planted under its name can never make the log grow a file elsewhere."""

    def _open(self):
        fd = open_for_append(Path(self.baseFilename), "this run's log")
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8", errors=self.errors)

"""User-facing errors: one clear sentence and a non-zero exit, never a traceback."""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable
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


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's main; print a UserError as one line on stderr and return exit status 2."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    previous = signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM cleans up like Ctrl-C
    try:
        return main(argv) or 0
    except UserError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

"""How every command runs: a user's mistake is one sentence and exit status 2, Ctrl-C and SIGTERM exit 130.

``run_cli`` is the only place with process-wide effects: it turns SIGTERM into the same
clean-up as Ctrl-C and prints warnings as one line, for the duration of the command.

Under torchrun every process checks the same flags and files, so a mistake would be printed once per process:
rank 0 prints it, and another rank only if it is still running ``RANK_GRACE`` seconds later (its mistake was
its own, such as a missing GPU), since torchrun stops every other process as soon as one fails.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Callable

from utils.core.errors import UserError


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


RANK_GRACE = 3.0  # seconds


def _said_by_rank_zero() -> bool:
    """True for a process of rank > 0 under torchrun that torchrun stopped within ``RANK_GRACE`` seconds,
    because another process (rank 0, with the same mistake) failed first."""
    rank = os.environ.get("RANK", "0")
    if not rank.isdigit() or int(rank) == 0:  # a mis-set RANK is reported by the process that has it
        return False
    try:
        time.sleep(RANK_GRACE)
    except KeyboardInterrupt:  # torchrun's SIGTERM
        return True
    return False


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's main; print a UserError as one line on stderr and return exit status 2."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    previous = signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM cleans up like Ctrl-C
    try:
        return main(argv) or 0
    except UserError as err:
        if _said_by_rank_zero():
            return 2
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)

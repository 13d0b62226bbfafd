"""How every command runs: a user's mistake is one sentence and exit status 2, Ctrl-C and SIGTERM exit 130.

``run_cli`` is the only place with process-wide effects: it turns SIGTERM into the same
clean-up as Ctrl-C and prints warnings as one line, for the duration of the command.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable

from utils.core.errors import UserError


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

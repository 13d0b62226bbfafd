"""Running the project's own scripts from the other commands: printed as a user would type them, stopped on failure."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

from utils.core.errors import fail


def run(cmd: list[str], quiet: bool = False, log: Path | None = None) -> None:
    """Print a command as a user would type it, then run it; stop if it fails.

    ``quiet`` hides its standard output; ``log`` appends all its output to that file instead
    of the screen, and shows the end of it if the command fails.
    """
    shown = ["python" if c == sys.executable else c for c in cmd]
    print(f"\n$ {shlex.join(shown)}", flush=True)
    if log is None:
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL if quiet else None)
    else:
        with open(log, "a") as fh:
            fh.write(f"\n$ {shlex.join(shown)}\n")
            fh.flush()
            start = time.time()
            result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
            fh.write(f"# exit status {result.returncode} after {time.time() - start:.1f} s\n")
    if result.returncode != 0:
        if log is not None:
            print("\n".join(log.read_text().splitlines()[-15:]), file=sys.stderr)
        fail(
            f"stopped: `{shlex.join(shown)}` exited with status {result.returncode}"
            + (f" (its output: {log})" if log else "")
            + "."
        )

"""Running the project's own scripts from the other commands: printed as a user would type them, stopped on failure.

A command runs in a session of its own, so that a Ctrl-C at the terminal reaches it only through
this process, once: an interruption here (Ctrl-C, SIGTERM, a hang-up) is passed on to the command
as SIGTERM, which the project's commands handle like Ctrl-C, and the command gets ``STOP_WAIT``
seconds to clean up after itself (its staging folders) before it is killed. A command killed
outright would leave them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from utils.core.errors import fail
from utils.core.inplace import open_for_append

STOP_WAIT = 30.0  # seconds an interrupted command has to clean up before it is killed
_PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def run(cmd: list[str], quiet: bool = False, log: Path | None = None) -> None:
    """Print a command as a user would type it, then run it; stop if it fails.

    ``quiet`` hides its standard output; ``log`` appends all its output to that file instead
    of the screen, and shows the end of it if the command fails.
    """
    shown = ["python" if c == sys.executable else c for c in cmd]
    print(f"\n$ {shlex.join(shown)}", flush=True)
    if log is None:
        returncode = run_child(cmd, stdout=subprocess.DEVNULL if quiet else None)
    else:
        with os.fdopen(open_for_append(log, "the commands' log"), "a") as fh:
            fh.write(f"\n$ {shlex.join(shown)}\n")
            fh.flush()
            start = time.time()
            returncode = run_child(cmd, stdout=fh, stderr=subprocess.STDOUT)
            fh.write(f"# exit status {returncode} after {time.time() - start:.1f} s\n")
    if returncode != 0:
        if log is not None:
            print("\n".join(log.read_text().splitlines()[-15:]), file=sys.stderr)
        fail(
            f"stopped: `{shlex.join(shown)}` exited with status {returncode}"
            + (f" (its output: {log})" if log else "")
            + "."
        )


def run_child(cmd: list[str], **streams) -> int:
    """Run ``cmd`` to its end and return its exit status. If this process is interrupted meanwhile (or anything
    else goes wrong here), the command is stopped as the module says, and the interruption goes on up."""
    received: list[int] = []

    def interrupted(signum: int, frame) -> None:
        received.append(signum)
        if len(received) == 1:  # a second signal while the command cleans up must not cut that short
            raise KeyboardInterrupt

    main = threading.current_thread() is threading.main_thread()
    caught = [s for s in _PASSED_ON if main and signal.getsignal(s) is not signal.SIG_IGN]
    previous = {s: signal.signal(s, interrupted) for s in caught}
    proc = None
    try:
        proc = subprocess.Popen(cmd, start_new_session=True, **streams)
        return proc.wait()
    except BaseException:
        if proc is not None:
            stop(proc)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def stop(proc: subprocess.Popen) -> None:
    """Send SIGTERM to a running ``proc`` (the project's commands clean up on it as on Ctrl-C) and wait
    ``STOP_WAIT`` seconds for it to end, then kill it."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=STOP_WAIT)

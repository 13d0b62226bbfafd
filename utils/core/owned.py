"""One way to write an output: ``owned_output`` checks it, locks it, stages it, records it and puts it in place.

Every command that writes goes through it once: make_patch.py's patch folder, main.py's run folder, test.py's
submission, the flare data, the ablation study, the ONNX export, the packed starter model and the demo's copies
into ``weights/``. A folder output is proved ours by its manifest (the hash of every file it wrote); a single
file proves itself by what it holds (``Output.ours``: an export's metadata, a model card, a demo tag).
docs/safety.md gives the guarantees and why ``--overwrite`` proves ownership instead of moving outputs aside.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from utils.core.errors import fail, reported_write
from utils.core.locks import output_lock, private_folder
from utils.core.manifest import has_files, ownership_problem
from utils.core.outputs import pending_swap, staged_dir


@dataclass(frozen=True)
class Output:
    """Where a command writes, and what it may replace there."""

    path: Path
    kind: str  # a folder: the kind its manifest records ("run", "patches"); a file: what it is, "an ONNX export"
    flag: str  # names the output in messages: "--output_dir", "patch folder"
    written_by: str  # the command, recorded in a folder's manifest
    overwrite: bool = False
    protected: Mapping[str, str | Path | None] = field(default_factory=dict)  # inputs it must neither be nor hold
    ours: Callable[[Path], bool] | None = None  # a single file: True for one of ``kind`` that the project wrote


def check_output(out: Output) -> Path:
    """Check, before any work, that ``out`` may be created or replaced; returns its resolved path.

    Refused with one sentence: a link; a folder where a file goes or a file where a folder goes; a path under a
    file or a mount point; an output that is, holds or lies in a ``protected`` folder or the working folder; an
    earlier output without ``overwrite``; anything the project did not write, whatever ``overwrite`` says; a
    parent that cannot be written.
    """
    real = _check_place(out)
    _check_earlier(out, Path(out.path), real)
    return real


def _check_place(out: Output) -> Path:
    """The resolved path of ``out`` if a result can be put there, whatever is there now."""
    given, flag = Path(out.path), out.flag
    real = _resolved(given, flag, out.ours is not None)
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        fail(f"{flag} {given} is or contains the current working folder; choose a dedicated folder.")
    for what, other in out.protected.items():
        other_real = None if other is None else Path(other).resolve()
        if other_real is not None and (real == other_real or real in other_real.parents or other_real in real.parents):
            fail(f"{flag} {given} overlaps the {what} {other}; choose {'a folder' if out.ours is None else 'a file'} outside it.")  # fmt: skip
    parent = next((p for p in (real, *real.parents) if p.exists() and p.is_dir()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{flag} {given} cannot be written (no write permission in {parent}); choose another {flag}.")
    return real


def _resolved(given: Path, flag: str, is_file: bool) -> Path:
    """The resolved ``given``, refused where it cannot be replaced by a finished result: a link, the wrong sort
    of entry, a path under a file, or a mount point (the staging folder beside it lies on another file system)."""
    if given.is_symlink():
        fail(f"{flag} {given} is a symbolic link; pass the {'file' if is_file else 'folder'} it points to, or another {flag}.")  # fmt: skip
    real = given.resolve()
    if real.exists() and real.is_dir() == is_file:
        hint = f"give the file to write, such as {given / 'output'}" if is_file else f"choose another {flag}"
        fail(f"{flag} {given} is a {'folder' if is_file else 'file'}, not a {'file' if is_file else 'folder'}; {hint}.")
    if real.is_dir() and os.path.ismount(real):
        fail(
            f"{flag} {given} is a mount point, which cannot be swapped for a finished result; pass a folder inside "
            f"it, e.g. {given / 'results'}."
        )
    blocker = next((p for p in real.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        fail(f"{flag} {given} lies under {blocker}, which is a file, not a folder; choose another {flag}.")
    return real


def _check_earlier(out: Output, given: Path, real: Path) -> None:
    """An earlier output is replaced only with ``overwrite``, and only if the project wrote it."""
    flag = out.flag
    if out.ours is not None:
        if real.exists() and not out.overwrite:
            fail(f"{given} already exists; pass --overwrite to replace it, or another {flag}.")
        if real.exists() and not out.ours(real):
            fail(f"{given} is not {out.kind} of this project, and only such a file is replaced; move it away{_or_another(flag)}.")  # fmt: skip
        return
    pending = pending_swap(real, out.kind)  # an earlier result may stand aside, to be put back
    if not (has_files(real) or pending):
        return
    problem = ownership_problem(real, out.kind) if real.exists() else None
    if problem:
        fail(
            f"{flag} {given} {problem}; move your files away or choose another {flag} "
            f"(nothing is deleted that the project did not make)."
        )
    if not out.overwrite:
        held = "already holds results" if has_files(real) else "was being replaced by a run that was killed"
        fail(f"{flag} {given} {held}; pass --overwrite to replace them or choose another {flag}.")


def _or_another(flag: str) -> str:
    return f" or choose another {flag}" if flag.startswith("--") else ""


@contextmanager
def owned_output(out: Output, hold: ExitStack | None = None) -> Iterator[Path]:
    """Check ``out``, take its lock, and yield where to write: an empty private folder for a folder output, a
    private file path for a single file. Only if the block succeeds is the result recorded and put in place,
    replacing an earlier output (checked again, as it may have changed meanwhile); otherwise nothing changes.

    The lock is released when the block ends, or with ``hold`` when that stack closes: a training run keeps
    writing into its folder after the folder is in place.
    """
    path = _check_place(out)
    with ExitStack() as local:
        (hold if hold is not None else local).enter_context(output_lock(out.path, out.flag))
        _check_earlier(out, Path(out.path), path)  # under the lock: no other run is writing it now
        if out.ours is None:
            with staged_dir(path, out.kind, out.written_by, out.overwrite) as stage:
                yield stage
            return
        with reported_write(path), private_folder(path) as folder:
            yield folder / path.name
            _put_file_in_place(folder / path.name, path, out)


def _put_file_in_place(tmp: Path, path: Path, out: Output) -> None:
    """Move the finished ``tmp`` onto ``path``: over a file of ``out.kind`` only, never over one that appeared
    or changed meanwhile (a hard link cannot be made over an existing name)."""
    if not tmp.is_file():
        raise RuntimeError(f"nothing was written to {tmp}")  # a bug of the writer, not a user's mistake
    if path.exists() or path.is_symlink():
        if path.is_symlink() or not out.ours(path):
            fail(f"{path} changed while this command ran and is not {out.kind} of this project; nothing was replaced.")
        if not out.overwrite:
            fail(f"{path} appeared while this command ran; nothing was replaced, pass --overwrite{_or_another(out.flag)}.")  # fmt: skip
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        fail(f"{path} appeared while this command ran; nothing was replaced, run again{_or_another(out.flag)}.")
    except OSError:  # a file system without hard links
        os.replace(tmp, path)

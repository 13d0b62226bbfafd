"""Safe file output: nothing half-written, nothing silently replaced, nothing deleted that we did not make.

Every folder a script replaces as a whole (the submission, a patch set, a training run,
the demo data) carries a marker file naming the entries the project wrote there. A
folder is replaced only when it has that marker and holds nothing else; any other
content is refused with a sentence that names a foreign file.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from utils.errors import fail

MARKER = ".hinet-output.json"
_STALE = re.compile(r"^\.(?P<name>.+)\.(?:partial|tmp)-(?P<pid>\d+)(?:\..*)?$")


def pid_alive(pid: int) -> bool:
    """True if a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path) -> list[Path]:
    """Delete staging folders and temporary files that a killed run of this project left in ``folder``.

    Only names this module makes (``.<name>.partial-<pid>``, ``.<name>.tmp-<pid>...``) whose
    process no longer exists are touched.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _STALE.match(entry.name)
        if match is None or int(match["pid"]) == os.getpid() or pid_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A crash mid-write leaves the previous file intact; a temporary file left by a killed
    process is removed by the next call in the same folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    tmp_path = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def has_files(folder: str | Path) -> bool:
    """True if ``folder`` exists and holds anything: a result that must not be silently replaced."""
    folder = Path(folder)
    return folder.is_dir() and any(folder.iterdir())


def _owned_patterns(folder: Path) -> list[str] | None:
    try:
        return list(json.loads((folder / MARKER).read_text())["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def foreign_entries(folder: Path, fallback: Sequence[str] = ()) -> list[str]:
    """Entries of ``folder`` that the project did not write there: per its marker, else per ``fallback``.

    ``fallback`` names what earlier releases wrote before the marker existed; it must be
    specific enough never to match a user's own files.
    """
    owned = _owned_patterns(folder)
    owned = list(fallback) if owned is None and fallback else owned
    names = sorted(p.name for p in folder.iterdir() if p.name != MARKER and not _STALE.match(p.name))
    if owned is None:
        return names
    return [n for n in names if not any(fnmatch.fnmatchcase(n, pat) for pat in owned)]


def check_output_folder(
    folder: str | Path,
    flag: str,
    overwrite: bool,
    protected: dict[str, str | Path | None] | None = None,
    fallback: Sequence[str] = (),
) -> Path:
    """Check, before any work, that ``folder`` may be created or replaced; returns its resolved path.

    Refused with one sentence: a path that is a file or a symbolic link; a folder that is,
    contains or lies inside a ``protected`` one (inputs, labels, checkpoints) or the working
    folder; a folder holding results without ``overwrite``; a folder holding anything this
    project did not write there, whatever ``overwrite`` says (``fallback``: see
    ``foreign_entries``); a parent that cannot be written.
    """
    given = Path(folder)
    if given.is_symlink():
        fail(f"{flag} {given} is a symbolic link; pass the folder it points to, or another folder.")
    real = given.resolve()
    if real.exists() and not real.is_dir():
        fail(f"{flag} {given} is a file, not a folder; choose another {flag}.")
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        fail(f"{flag} {given} is or contains the current working folder; choose a dedicated folder.")
    for what, other in (protected or {}).items():
        if other is None:
            continue
        other_real = Path(other).resolve()
        if real == other_real or real in other_real.parents or other_real in real.parents:
            fail(f"{flag} {given} overlaps the {what} {other}; choose a folder outside it.")
    if has_files(real):
        foreign = foreign_entries(real, fallback)
        if foreign:
            fail(
                f"{flag} {given} holds {foreign[0]!r}, which this project did not write there; "
                f"move your files away or choose another {flag} (nothing is deleted that the project did not make)."
            )
        if not overwrite:
            fail(f"{flag} {given} already holds results; pass --overwrite to replace them or choose another {flag}.")
    parent = next((p for p in (real, *real.parents) if p.exists()), None)
    if parent is None or not os.access(parent, os.W_OK | os.X_OK):
        fail(f"{flag} {given} cannot be written (no write permission in {parent}); choose another {flag}.")
    return real


def write_marker(folder: Path, entries: Sequence[str], written_by: str) -> None:
    """Record which entries of ``folder`` (names or glob patterns) the project owns."""
    (folder / MARKER).write_text(json.dumps({"written_by": written_by, "entries": list(entries)}, indent=1) + "\n")


@contextmanager
def staged_dir(
    path: str | Path, entries: Sequence[str], written_by: str, fallback: Sequence[str] = ()
) -> Iterator[Path]:
    """Yield an empty hidden sibling folder; it replaces ``path`` only if the block succeeds.

    ``entries`` (names or glob patterns) is what the block writes; it goes into the folder's
    marker, so that a later run may replace it. The folder must have passed
    ``check_output_folder``. A failed run leaves the earlier ``path`` untouched and nothing
    half-written behind, not even the parent folders this call had to create.
    """
    path = Path(path).resolve()
    new_parents = [p for p in path.parents if not p.exists()]  # innermost first
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent)
    stage = path.with_name(f".{path.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        write_marker(stage, entries, written_by)
        if path.exists():
            foreign = foreign_entries(path, fallback)
            if foreign:  # something appeared while we worked: keep it, and say so
                fail(f"{path} now holds {foreign[0]!r}, which this project did not write; nothing was replaced.")
            shutil.rmtree(path)
        os.replace(stage, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not path.exists():
            for parent in new_parents:
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()

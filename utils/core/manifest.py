"""Ownership of outputs: nothing half-written, nothing silently replaced, nothing deleted that we did not make.

Every folder the project writes as a whole (a submission, a patch set, a training run, the
demo data, a study) carries a manifest, ``.hinet-output.json``, that names the kind of output
and lists every file and folder the project wrote there, each file with its size and SHA-256.
The manifest is the only proof of ownership, and it is exact:

- ``--overwrite`` replaces a folder only if its manifest is of the same kind and every entry in
  the folder is listed and unchanged (same size and, unless its size and modification time are
  as recorded, the same hash); anything else is named and the run refused. Nothing is ever
  claimed by a pattern, a folder name or a marker alone.
- A replaced output is removed entry by entry from its manifest, never as a tree.
- New results are built in a private staging folder (``utils.core.locks``) and swapped into place
  in one atomic rename, under the output's lock, only after every check and all the work
  have succeeded (``utils.core.outputs``): an interrupted run leaves the earlier result as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from utils.core.inplace import open_regular
from utils.core.locks import atomic_path, lock_holder, lock_state, remove_stale, stage_state

MANIFEST = ".hinet-output.json"
KINDS = ("submission", "patches", "run", "demo data", "study")
_FORMAT = 2


def file_record(path: Path) -> dict:
    stat = path.stat()
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest if it is a well-formed one of this release, else None (a link, a FIFO or a
    damaged or foreign file under its name is no manifest, and is never waited on)."""
    try:
        with os.fdopen(open_regular(folder / MANIFEST, os.O_RDONLY)) as fh:
            manifest = json.loads(fh.read())
        ok = manifest.get("format") == _FORMAT and manifest.get("kind") in KINDS
        ok = ok and isinstance(manifest.get("files"), dict) and isinstance(manifest.get("dirs"), list)
        ok = ok and isinstance(manifest.setdefault("outputs", {}), dict)
        ok = ok and all(_is_record(r) for r in manifest["files"].values())
        ok = ok and all(k in KINDS for k in manifest["outputs"].values())
        names = [*manifest["files"], *manifest["dirs"], *manifest["outputs"]] if ok else []
        return manifest if ok and all(_inside(name) for name in names) else None
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return None


def _is_record(record: object) -> bool:
    """A file's entry as ``file_record`` writes it."""
    if not isinstance(record, dict):
        return False
    whole = all(isinstance(record.get(k), int) and not isinstance(record.get(k), bool) for k in ("size", "mtime_ns"))
    return whole and isinstance(record.get("sha256"), str)


def _inside(name: object) -> bool:
    """A manifest entry must be a plain relative path below its folder: a forged ``../x`` or ``/x`` is no proof."""
    if not isinstance(name, str) or not name or "\\" in name:
        return False
    parts = PurePosixPath(name).parts
    return not PurePosixPath(name).is_absolute() and all(part not in ("", ".", "..") for part in parts)


def _leftover(path: Path) -> bool:
    """A lock file of the project that no live process holds: harmless, and taken over by the next run."""
    return lock_state(path) == "stale"


def _entries(folder: Path, nested: dict | None = None) -> Iterator[tuple[str, Path]]:
    """Every entry below ``folder`` (relative name, path) but its manifest and what lies inside ``nested``
    outputs (each is yielded itself); symbolic links are yielded, never followed."""
    nested = nested or {}
    for root, dirs, files in os.walk(folder):
        if remove_stale(Path(root)):  # the staging folders of killed runs are ours: gone
            dirs[:] = [d for d in dirs if (Path(root) / d).exists()]
        for name in sorted(dirs) + sorted(files):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if rel != MANIFEST and not _leftover(path):
                yield rel, path
        dirs[:] = [d for d in dirs if (Path(root) / d).relative_to(folder).as_posix() not in nested]


def _within(folder: Path, rel: str) -> bool:
    """No folder between ``folder`` and its entry ``rel`` is a link: a listed name never leads outside."""
    path = folder
    for part in PurePosixPath(rel).parts[:-1]:
        path = path / part
        if path.is_symlink() or not path.is_dir():
            return False
    return True


def _unchanged(folder: Path, rel: str, record: dict, trust_mtime: bool = True) -> bool:
    """Same size and hash as recorded, reached without a link. A check may trust an unchanged size and
    modification time, as git does; nothing is deleted without its hash compared (``trust_mtime=False``)."""
    path = folder / rel
    if not _within(folder, rel):
        return False
    try:
        stat = path.lstat()
    except OSError:
        return False
    if not path.is_file() or path.is_symlink() or stat.st_size != record.get("size"):
        return False
    same_time = trust_mtime and stat.st_mtime_ns == record.get("mtime_ns")
    return same_time or file_record(path)["sha256"] == record.get("sha256")


def ownership_problem(folder: Path, kind: str, prefix: str = "", trust_mtime: bool = True) -> str | None:
    """Why ``folder`` is not an unchanged output of ``kind`` that the project may replace, or None if it is.

    Outputs nested in it (a study's runs) must be listed in its manifest and pass the same test;
    ``prefix`` is the nested output's place, for the message. The last check before a swap
    compares every hash (``trust_mtime=False``).
    """
    manifest = read_manifest(folder)
    if manifest is None:
        first = next((rel for rel, _ in _entries(folder)), None)
        return None if first is None else f"holds {prefix + first!r}, which this project did not write there"
    owner = (folder / MANIFEST).stat().st_uid
    if owner != os.geteuid():  # a manifest proves nothing about files another user placed
        return f"holds a manifest that another user (uid {owner}) wrote, which this project does not trust"
    if manifest["kind"] != kind:
        return f"holds a {manifest['kind']} written by {manifest.get('written_by', '?')}, not a {kind}"
    files, dirs, nested = manifest["files"], set(manifest["dirs"]), manifest["outputs"]
    for rel, path in _entries(folder, nested):
        if rel in nested and path.is_dir() and not path.is_symlink():
            problem = ownership_problem(path, nested[rel], f"{prefix}{rel}/", trust_mtime)
            if problem:
                return problem
        elif path.is_dir() and not path.is_symlink() and rel in dirs:
            continue
        elif stage_state(path) == "live":
            return f"is being written by a run in progress (its staging folder {prefix + rel!r})"
        elif lock_state(path) == "held":
            return f"is in use by {lock_holder(path)}, which holds {prefix + rel!r}"
        elif rel not in files or path.is_dir():
            return f"holds {prefix + rel!r}, which this project did not write there"
        elif not _unchanged(folder, rel, files[rel], trust_mtime):
            return f"holds {prefix + rel!r}, which was changed after this project wrote it"
    return None


def write_manifest(
    folder: Path, kind: str, written_by: str, names: Iterable[str] | None = None, outputs: dict[str, str] | None = None
) -> None:
    """Record ``names`` (relative paths; every entry of ``folder`` when None) as the project's, with their
    hashes, and ``outputs`` (relative folder: kind) as outputs nested in it with manifests of their own.

    What is already recorded stays recorded; what no longer exists is dropped.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of output {kind!r}")
    manifest = read_manifest(folder) or {
        "format": _FORMAT, "kind": kind, "written_by": written_by, "files": {}, "dirs": [], "outputs": {}
    }  # fmt: skip
    files, dirs, nested = manifest["files"], set(manifest["dirs"]), manifest["outputs"] | (outputs or {})
    wanted = [rel for rel, _ in _entries(folder, nested)] if names is None else list(names)
    for rel in [*wanted, *nested]:
        dirs.update(parent.as_posix() for parent in Path(rel).parents[:-1])
    for rel in wanted:
        path = folder / rel
        if path.is_dir() and not path.is_symlink():
            if rel not in nested:
                dirs.add(rel)
        elif path.is_file() and not path.is_symlink():
            files[rel] = file_record(path)
    manifest["files"] = {rel: r for rel, r in sorted(files.items()) if (folder / rel).is_file()}
    manifest["dirs"] = sorted(dirs)  # a nested output is recorded before its command makes it
    manifest["outputs"] = dict(sorted(nested.items()))
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def add_to_manifest(folder: Path, names: Iterable[str]) -> None:
    """Record ``names`` in the manifest of ``folder`` if it has one (a derived file written into an output)."""
    manifest = read_manifest(folder)
    if manifest is not None:
        write_manifest(folder, manifest["kind"], manifest.get("written_by", "?"), names)


def remove_output(folder: Path, kind: str) -> list[str]:
    """Delete what the manifest of ``folder`` lists and is unchanged (nested outputs likewise), then the
    folder if that empties it. Returns what was kept: anything not listed or changed since, which the
    caller has normally ruled out with ``ownership_problem``."""
    manifest = read_manifest(folder)
    if manifest is None and ownership_problem(folder, kind) is None:  # nothing but a killed run's lock files
        manifest = {"files": {}, "dirs": [], "outputs": {}, "kind": kind}
    if manifest is None or manifest["kind"] != kind:
        return [MANIFEST]
    for rel, nested_kind in manifest["outputs"].items():
        if _within(folder, rel) and (folder / rel).is_dir() and not (folder / rel).is_symlink():
            remove_output(folder / rel, nested_kind)
    for rel, record in manifest["files"].items():
        if _unchanged(folder, rel, record, trust_mtime=False):
            (folder / rel).unlink()
    for root, _, names in os.walk(folder):
        for name in names:
            if _leftover(Path(root) / name):
                (Path(root) / name).unlink(missing_ok=True)
    for rel in sorted(manifest["dirs"], key=lambda d: d.count("/"), reverse=True):
        path = folder / rel
        if _within(folder, rel) and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
            path.rmdir()
    kept = [rel for rel, _ in _entries(folder)]
    if not kept:
        (folder / MANIFEST).unlink(missing_ok=True)
        folder.rmdir()
    return kept


def outputs_below(folder: Path, kind: str) -> tuple[list[Path], str | None]:
    """The unchanged outputs of ``kind`` in ``folder`` and its sub-folders, and why anything else there
    (a foreign file, a changed output) is not the project's, or None. Stale staging folders are removed."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        root = Path(root)
        remove_stale(root)
        for name in sorted(dirs):
            path = root / name
            if path.is_symlink():
                return found, f"{path} is a symbolic link, which this project did not make"
            if read_manifest(path) is not None:
                problem = ownership_problem(path, kind)
                if problem:
                    return found, f"{path} {problem}"
                found.append(path)
        dirs[:] = [d for d in sorted(dirs) if root / d not in found and (root / d).exists()]
        foreign = [f for f in sorted(files) if lock_state(root / f) is None]
        if foreign:
            return found, f"{root / foreign[0]} was not written by this project"
    return found, None


def has_files(folder: str | Path) -> bool:
    """True if ``folder`` exists and holds anything: a result that must not be silently replaced."""
    folder = Path(folder)
    return folder.is_dir() and any(folder.iterdir())

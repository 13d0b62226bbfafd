"""Whether files hold the same bytes, cheaply: sizes first, contents only where the sizes agree.

Data mistakes that leave every name right are caught so: a label folder that holds copies of the
inputs (a model trained or weighed on it learns to change nothing), or held-out images that are
copies of the test images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def same_bytes(a: Path, b: Path) -> bool:
    """True if two files hold the same bytes (the same file included)."""
    if a.resolve() == b.resolve():
        return True
    if a.stat().st_size != b.stat().st_size:
        return False
    return digest(a) == digest(b)


def all_identical(pairs: Iterable[tuple[Path, Path]]) -> bool:
    """True if every pair holds the same bytes twice (and there is a pair). It stops at the first pair that
    differs, which for real data is the first one, so it costs one ``stat`` per file then."""
    seen = False
    for a, b in pairs:
        if not same_bytes(a, b):
            return False
        seen = True
    return seen


def digest(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def find_copy(paths: Iterable[Path], originals: Iterable[Path]) -> tuple[Path, Path] | None:
    """The first of ``paths`` that holds the same bytes as one of ``originals``, with that original; None if
    none does. A file is hashed only when its size is that of an original, and each at most once."""
    by_size: dict[int, list[Path]] = {}
    for original in originals:
        by_size.setdefault(original.stat().st_size, []).append(original)
    digests: dict[Path, str] = {}

    def cached(path: Path) -> str:
        if path not in digests:
            digests[path] = digest(path)
        return digests[path]

    for path in paths:
        for original in by_size.get(path.stat().st_size, []):
            if cached(path) == cached(original):
                return path, original
    return None

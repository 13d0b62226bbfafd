"""CSV tables (``metrics.csv``) written atomically, with a failed write (a full disk) as one sentence."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from utils.core.errors import reported_write
from utils.core.locks import atomic_path


def write_csv(
    path: str | Path,
    rows: Iterable[dict],
    columns: Sequence[str],
    shown: str | Path | None = None,
    then: str = "run again",
) -> None:
    """Write ``rows`` under a header of ``columns``; the file appears whole or not at all.

    ``shown``: the name to give in an error (the final place of a file written into a staging
    folder); ``then``: what the user does once the disk has room.
    """
    with reported_write(shown or path, then), atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)

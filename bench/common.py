"""Helpers for the benchmarks: timing, peak memory and a reproducible bench data set."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest wall time of ``repeat`` calls: the least disturbed by a noisy machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def demo_set(root: Path, train: int, test: int, height: int, width: int) -> Path:
    """Generate (once) a demo data set for benchmarking under ``root`` (a bank of 8 PSFs: seconds, not a minute)."""
    from scripts.flare_data import generate
    from utils.flare.bank import BankSettings

    if not (root / "train_original" / "train.csv").is_file():
        generate(root, train, test, height, width, seed=123, overwrite=True, progress=False, psf=BankSettings(count=8))
    return root


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])

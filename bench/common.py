"""Helpers for the benchmarks: flag ranges, timing and a reproducible bench data set."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils.core.errors import fail  # noqa: E402  (after the path to the project is set)

# A whole-number flag of a benchmark: name -> (default, lowest, highest, help). The ranges keep a run to what
# the machine can hold and the benchmark can measure; a value outside is one sentence, not a traceback.
Counts = dict[str, tuple[int, int, int, str]]


def add_counts(parser: argparse.ArgumentParser, counts: Counts) -> None:
    """One whole-number flag per entry of ``counts``, its range in its help."""
    for name, (default, low, high, text) in counts.items():
        parser.add_argument(f"--{name}", type=int, default=default, help=f"{text} ({low} to {high}; default {default})")


def check_counts(args: argparse.Namespace, counts: Counts) -> None:
    """Refuse, before any work, every flag of ``counts`` outside its range, in one sentence."""
    problems = [f"--{name} {getattr(args, name)} is not from {low} to {high}"
                for name, (_, low, high, _) in counts.items() if not low <= getattr(args, name) <= high]  # fmt: skip
    if problems:
        fail("; ".join(problems) + ".")


def parse_size(text: str, low: int, high: int) -> tuple[int, int]:
    """``--size HEIGHTxWIDTH`` as (height, width), each side from ``low`` to ``high``; one sentence otherwise."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        fail(f"--size {text!r} is not HEIGHTxWIDTH in pixels, e.g. 1224x1632.")
    height, width = (int(p) for p in parts)
    if not (low <= height <= high and low <= width <= high):
        fail(f"--size {text} has a side outside {low} to {high} pixels; choose, e.g., 1224x1632.")
    return height, width


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
    from utils.flare.data_settings import FlareDataSettings

    if not (root / "train_original" / "train.csv").is_file():
        generate(FlareDataSettings(root, train, test, height, width, 123, psf_count=8, overwrite=True, progress=False))
    return root


def table(rows: list[tuple], header: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])

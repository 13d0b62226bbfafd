"""Speed of the optical flare generator: the PSF bank, and one pair against the PNG I/O of the same pair.

    python -m bench.bench_flare [--psf_count 64] [--workers 2] [--pairs 6] [--size 1224x1632]

1. The PSF bank of ``--psf_count`` PSFs at the default grid, wavelengths and size, computed
   (not read from a cache) in ``--workers`` processes. Goal: 64 PSFs in at most 2 minutes on 2 cores.
2. ``--pairs`` pairs at ``--size`` on one core (OpenCV and the FFTs single-threaded), after one
   untimed warm-up pair: the time to make a pair (scene, lights, flare, noise, 8-bit input and target, without masks), against the time
   to write its two PNGs and read them back, in the same run. Goal: at most 1 s per pair.
3. The mean input PSNR of those pairs (training and test halves), and how it spreads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import add_counts, check_counts, parse_size, table
from utils.core.cli import run_cli
from utils.flare.bank import BankSettings, compute_bank
from utils.flare.pairs import FlareJob, SceneSettings, make_pair
from utils.flare.scenes import PHOTOS, load_photo


def bench_bank(count: int, workers: int) -> tuple[float, object]:
    start = time.perf_counter()
    bank = compute_bank(BankSettings(count=count), seed=0, workers=workers)
    return time.perf_counter() - start, bank


def bench_pairs(bank, pairs: int, height: int, width: int, folder: Path) -> list[dict]:
    """Per pair: seconds to make it, seconds to write and read its PNGs, its input PSNR and scene source."""
    cv2.setNumThreads(1)
    photos = {name: load_photo(name) for name in PHOTOS}
    make_pair(FlareJob(SceneSettings(1, height, width, photos=photos), bank), "train", 10**6)  # warm-up: not timed
    job = FlareJob(SceneSettings(0, height, width, photos=photos), bank)
    rows = []
    for k in range(pairs):
        split, index = ("train", k // 2) if k % 2 == 0 else ("test", k // 2)
        start = time.perf_counter()
        pair, source = make_pair(job, split, index)
        made = time.perf_counter() - start
        start = time.perf_counter()
        for name, img in (("input", pair.input), ("target", pair.target)):
            path = folder / f"{name}.png"
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            cv2.imread(str(path))
        io = time.perf_counter() - start
        rows.append(
            {"split": split, "source": f"{source.kind}:{source.name}", "make": made, "io": io, "psnr": pair.psnr}
        )
    return rows


COUNTS = {
    "psf_count": (64, 1, 1024, "PSFs in the bank"),
    "workers": (2, 1, 64, "processes for the PSF bank"),
    "pairs": (6, 1, 100, "pairs to time (alternately training and test)"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_counts(p, COUNTS)
    p.add_argument("--size", default="1224x1632", help="HEIGHTxWIDTH of the pairs, each side 64 to 4096")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_counts(args, COUNTS)
    height, width = parse_size(args.size, 64, 4096)
    bank_seconds, bank = bench_bank(args.psf_count, args.workers)
    settings = BankSettings(count=args.psf_count)
    print(f"PSF bank: {args.psf_count} PSFs (grid {settings.grid}, {settings.wavelengths} wavelengths, stored at "
          f"{settings.size}) in {bank_seconds:.1f} s with {args.workers} workers "
          f"({bank_seconds / args.psf_count:.2f} s per PSF)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_pairs(bank, args.pairs, height, width, Path(tmp))
    print(table([(r["split"], r["source"], f"{r['make']:.3f}", f"{r['io']:.3f}", f"{r['make'] / r['io']:.2f}",
                  f"{r['psnr']:.2f}") for r in rows],
                ("split", "scene", "make (s)", "PNG write+read (s)", "ratio", "input PSNR (dB)")))  # fmt: skip
    make, io = np.mean([r["make"] for r in rows]), np.mean([r["io"] for r in rows])
    psnr = [r["psnr"] for r in rows]
    print(f"one {height}x{width} pair on one core: {make:.3f} s (PNG write+read of it: {io:.3f} s; ratio {make / io:.2f}); "
          f"mean input PSNR {np.mean(psnr):.2f} dB (min {np.min(psnr):.2f}, max {np.max(psnr):.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

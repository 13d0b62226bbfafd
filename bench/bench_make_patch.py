"""make_patch throughput: the project's extractor, a straightforward per-crop version, and the I/O floor.

    python -m bench.bench_make_patch [--images 8] [--size 1224x1632] [--workers 2]

All three run on the same images with the same worker count and write the same
patches. The floor only decodes each image and encodes and writes the patches that
the rules keep (their positions are computed beforehand, outside the timing).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import add_counts, check_counts, demo_set, parse_size, table
from utils.core.cli import run_cli
from utils.core.tiling import tile_starts
from utils.data.folds import kfold_split, read_pairs_csv
from utils.data.patches import PNG_COMPRESSION, PatchSettings, extract_pair

SETTINGS = PatchSettings()
LARGEST_CROP = max(crop for crop, _ in SETTINGS.growth_steps())  # make_patch.py refuses smaller training images
COUNTS = {
    "images": (8, 1, 64, "training images to cut"),
    "workers": (2, 1, 64, "worker processes"),
    "rounds": (3, 1, 20, "timed rounds (the best of each is kept)"),
}


def straightforward(task) -> int:
    """The rules as the original wrote them: a padded copy and an HSV conversion per crop."""
    inp, tar, out = task
    img, lab = cv2.imread(str(inp)), cv2.imread(str(tar))
    h, w = img.shape[:2]
    n_total = 0
    for crop, stride in SETTINGS.growth_steps():
        n = 0
        if crop == SETTINGS.resize:
            for top in range(0, h, stride):
                for left in range(0, w, stride):
                    piece = np.zeros((crop, crop, 3), np.uint8)
                    part = img[top : top + crop, left : left + crop]
                    piece[: part.shape[0], : part.shape[1]] = part
                    if (cv2.cvtColor(piece, cv2.COLOR_BGR2HSV)[..., 2] > 200).sum() < SETTINGS.v_threshold:
                        continue
                    target = np.zeros((crop, crop, 3), np.uint8)
                    part = lab[top : top + crop, left : left + crop]
                    target[: part.shape[0], : part.shape[1]] = part
                    params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
                    cv2.imwrite(str(out / "input" / f"{n:05d}_{inp.name}"), piece, params)
                    cv2.imwrite(str(out / "target" / f"{n:05d}_{tar.name}"), target, params)
                    n += 1
        else:
            for top in tile_starts(h, crop, stride, "shift"):
                for left in tile_starts(w, crop, stride, "shift"):
                    for src, sub, name in ((img, "input", inp.name), (lab, "target", tar.name)):
                        piece = cv2.resize(np.ascontiguousarray(src[top : top + crop, left : left + crop]),
                                           (SETTINGS.resize, SETTINGS.resize), interpolation=cv2.INTER_CUBIC)  # fmt: skip
                        cv2.imwrite(str(out / sub / f"{n:05d}_{crop}_{name}"), piece,
                                    [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])  # fmt: skip
                    n += 1
        n_total += n
    return n_total


def project(task) -> int:
    inp, tar, out = task
    return sum(extract_pair(inp, tar, SETTINGS, out).values())


def floor(task) -> int:
    """Decode both images, then encode and write as many resize x resize patches as the rules keep."""
    inp, tar, out, count = task
    img, lab = cv2.imread(str(inp)), cv2.imread(str(tar))
    size = SETTINGS.resize
    grid = [(y, x) for y in range(0, img.shape[0] - size + 1, size) for x in range(0, img.shape[1] - size + 1, size)]
    params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    for n in range(count):
        top, left = grid[n % len(grid)]
        for src, sub in ((img, "input"), (lab, "target")):
            cv2.imwrite(str(out / sub / f"{n:05d}_{inp.name}"), src[top : top + size, left : left + size], params)
    return count


def run(fn, tasks, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with mp.get_context("fork").Pool(workers) as pool:
        n = sum(pool.map(fn, tasks))
    return time.perf_counter() - start, n


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    add_counts(p, COUNTS)
    p.add_argument("--size", default="1224x1632", help=f"HEIGHTxWIDTH of the images, each side {LARGEST_CROP} to 4096")
    args = p.parse_args(argv)
    check_counts(args, COUNTS)
    h, w = parse_size(args.size, LARGEST_CROP, 4096)
    work = Path(tempfile.mkdtemp(prefix="bench_patch_"))
    try:
        data = demo_set(work / "data", args.images + 1, 1, h, w)
        df = kfold_split(read_pairs_csv(data / "train_original" / "train.csv"), 2)
        pairs = [(data / "train_original/train_input_img" / r.input_img, data / "train_original/train_label_img" / r.label_img)
                 for r in df.itertuples()][: args.images]  # fmt: skip

        def fresh(name: str) -> Path:
            out = work / name
            shutil.rmtree(out, ignore_errors=True)
            (out / "input").mkdir(parents=True)
            (out / "target").mkdir()
            return out

        out = fresh("project")
        run(project, [(i, t, out) for i, t in pairs], args.workers)  # warm-up: file cache, and the patch counts
        counts = [len(list((out / "input").glob(f"*_{i.name}"))) for i, _ in pairs]
        results = {}
        for _ in range(args.rounds):  # interleaved rounds, best time of each: fair on a noisy machine
            for name, fn, tasks in (
                ("project", project, [(i, t, fresh("project")) for i, t in pairs]),
                ("straightforward", straightforward, [(i, t, fresh("straightforward")) for i, t in pairs]),
                ("floor", floor, [(i, t, fresh("floor"), n) for (i, t), n in zip(pairs, counts)]),
            ):
                t, n = run(fn, tasks, args.workers)
                if name not in results or t < results[name][0]:
                    results[name] = (t, n)
        assert results["project"][1] == results["straightforward"][1] == results["floor"][1]
        t_floor = results["floor"][0]
        rows = [(k, f"{n}", f"{t:.2f}", f"{n / t:.1f}", f"{t / t_floor:.2f}x") for k, (t, n) in results.items()]
        print(f"{args.images} images of {h}x{w}, {args.workers} workers, settings {SETTINGS}")
        print(table(rows, ("implementation", "patches", "seconds", "patches/s", "time vs floor")))
        ratio = results["straightforward"][0] / results["project"][0]
        print(f"project is {ratio:.2f}x the speed of the straightforward version and "
              f"{results['project'][0] / t_floor:.2f}x the floor's time")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))

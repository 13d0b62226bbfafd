"""Training throughput: the real loop against the same loop fed from tensors in memory.

    python -m bench.bench_train [--wf 8] [--steps 12]

The real loop reads patch PNGs through the DataLoader and the v3 augmentation; the
in-memory loop replays batches already decoded. Both run the same model, batch, loss,
clipping and optimiser step, so their ratio is the data pipeline's cost. The model
step is also timed in channels-last and default memory layouts.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import add_counts, check_counts, demo_set, table
from models.hinet import HINet
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.data.augment import build_augmentation
from utils.data.datasets import PatchDataset
from utils.data.folds import patch_pairs, read_fold_csv
from utils.data.layout import FOLD_CSV
from utils.data.patch_settings import PatchPaths, PatchRun
from utils.data.patches import PatchSettings, make_patches
from utils.train.losses import RestorationLoss

torch.set_num_threads(2)


PATCH = 256
# HINet halves a patch depth - 1 times, so a 256 patch allows depth 9 at most.
COUNTS = {
    "wf": (8, 1, 64, "HINet width"),
    "depth": (5, 1, PATCH.bit_length(), f"HINet depth (its patches are {PATCH}x{PATCH})"),
    "batch": (8, 1, 64, "patches per batch"),
    "steps": (12, 1, 1000, "timed steps"),
    "workers": (2, 0, 16, "data-loading worker processes"),
}
MAX_PARAMETERS = 100_000_000  # the original's HINet (wf 64, depth 5) has about 88 million


def check_args(args: argparse.Namespace) -> None:
    """The flags' ranges, then the size of the model they ask for (counted on the meta device, no memory)."""
    check_counts(args, COUNTS)
    with torch.device("meta"):
        count = sum(p.numel() for p in HINet(wf=args.wf, depth=args.depth).parameters())
    if count > MAX_PARAMETERS:
        fail(
            f"--wf {args.wf} --depth {args.depth} make a HINet of {count:,} parameters, more than the "
            f"{MAX_PARAMETERS:,} this benchmark allows (the original's has about 88 million); lower --wf or --depth."
        )


def step_fn(wf: int, depth: int, channels_last: bool):
    torch.manual_seed(0)
    model = HINet(wf=wf, depth=depth)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = RestorationLoss()

    def step(images, targets):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(images.contiguous(memory_format=fmt)), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    return step


def timed(step, batches) -> float:
    step(*batches[0])  # warm-up
    start = time.perf_counter()
    n = 0
    for images, targets in batches[1:]:
        step(images, targets)
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def bench_patches(work: Path, batch: int) -> list:
    """The training patches of a generated bench set (12 images of 576x768, fold 0 of 4), at least ``batch``."""
    data = demo_set(work / "data", 12, 1, 576, 768)
    src = data / "train_original"
    paths = PatchPaths(str(src / "train_input_img"), str(src / "train_label_img"), str(src), str(data))
    make_patches(PatchSettings(folds=4), paths, PatchRun(process_num=2, progress=False))
    patches = data / f"train/10Folds/0/resize{PATCH}"
    pairs = patch_pairs(patches / "input", patches / "target", read_fold_csv(src / FOLD_CSV), 0)
    if batch > len(pairs):  # drop_last would leave the loader without a single batch
        fail(f"--batch {batch} is more than the {len(pairs)} training patches of the bench set; lower it.")
    return pairs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    add_counts(p, COUNTS)
    args = p.parse_args(argv)
    check_args(args)
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        pairs = bench_patches(work, args.batch)
        dataset = PatchDataset(pairs, build_augmentation(PATCH, 3))
        loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers,
                                             drop_last=True)  # fmt: skip
        batches = []
        while len(batches) < args.steps + 1:
            batches += list(loader)
        batches = batches[: args.steps + 1]

        rows = []
        for cl in (True, False):
            step = step_fn(args.wf, args.depth, cl)
            in_memory = timed(step, batches)

            def real_loop(step=step):
                step(*batches[0])
                start, n = time.perf_counter(), 0
                it = iter(loader)
                while n < args.steps * args.batch:
                    try:
                        images, targets = next(it)
                    except StopIteration:
                        it = iter(loader)
                        continue
                    step(images, targets)
                    n += images.shape[0]
                return n / (time.perf_counter() - start)

            real = real_loop()
            layout = "channels-last" if cl else "default"
            rows.append((layout, f"{real:.2f}", f"{in_memory:.2f}", f"{in_memory / real:.2f}x"))
        print(f"HINet wf={args.wf} depth={args.depth}, batch {args.batch} of {PATCH}x{PATCH}, {args.workers} loader workers, "
              f"{len(pairs)} patches")  # fmt: skip
        print(table(rows, ("memory layout", "real loop samples/s", "in-memory samples/s", "data pipeline cost")))
        print(f"channels-last speed-up of the real loop: {float(rows[0][1]) / float(rows[1][1]):.2f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cli(main))

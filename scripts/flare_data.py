"""A paired lens-flare data set in the contest's layout, with flare computed from optics (``utils.flare``).

The demo's data (``make demo``, the ablation study) and a generator of training data at any size:

    python -m scripts.flare_data                                  # data/train_original, data/test_*_img
    python -m scripts.flare_data --height 1224 --width 1632 --train_count 400 --test_count 40 --workers 2
    python -m scripts.flare_data --scenes ~/my_clean_photos --masks --root data_flare

Clean night scenes (built-in public-domain/CC0 photographs made night-like, procedural streets,
facades and trees, or ``--scenes DIR``) get lamps, windows and signs far brighter than the scene;
the input adds their flare (emission convolved with a lens PSF from a bank computed from random
apertures over the visible spectrum, plus ghosts), sensor noise, clipping and 8-bit quantisation;
the target keeps the lights without flare. Training and test pairs never share a photograph or a
procedural seed.

Written, each folder built in a private staging folder and moved into place only when all are done:

    <root>/train_original/train_input_img/train_input_<10000+i>.png
    <root>/train_original/train_label_img/train_label_<10000+i>.png
    <root>/train_original/train.csv                      img_id,input_img,label_img
    <root>/test_input_img/test_input_<20000+i>.png
    <root>/test_label_img/test_label_<20000+i>.png
    with --masks (8-bit, 255 where the flare raises the input by 6 levels or more; streaks a subset):
    <root>/train_original/train_mask_img/train_glare_<id>.png, train_streak_<id>.png
    <root>/test_mask_img/test_glare_<id>.png, test_streak_<id>.png
    (test.py --eval_dir <root>/test_label_img then adds the PSNR over each mask to its metrics.csv)

The PSF bank is computed once per settings and seed and cached in <root>/.flare_cache/.
Ownership: these folders are replaced (with --overwrite) only when they hold a data set this
project generated, unchanged, and the patch sets cut from it (``<root>/train``) go with it; a
user's own data there, the contest's for one, is never touched, whatever the flags.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd

from scripts.flare_files import write_pairs
from utils.core.cli import run_cli
from utils.core.errors import fail, one_line
from utils.core.locks import output_lock
from utils.core.log import progress_bar
from utils.core.manifest import outputs_below, ownership_problem, read_manifest, remove_output
from utils.core.owned import Output, check_output, owned_output
from utils.data.images import IMAGE_SUFFIXES, inspect_image, natural_key
from utils.data.layout import TEST_INPUT, TEST_LABEL, TEST_MASKS, TRAIN_ORIGINAL
from utils.data.workers import WorkerDied
from utils.flare.bank import BankSettings, load_or_compute
from utils.flare.pairs import flare_free_count, is_flare_free
from utils.flare.scenes import PHOTOS, load_photo, split_user_images

KIND = "demo data"
WRITTEN_BY = "scripts.flare_data"
DEMO_FOLDERS = (TRAIN_ORIGINAL, TEST_INPUT, TEST_LABEL)  # and TEST_MASKS, written with --masks
CACHE = ".flare_cache"
MAX_COUNT = 10000  # names run from 10000 (train) and 20000 (test), five digits each
MAX_SIDE = 8192
MAX_GRID = 4096  # the PSFs' FFT grid: at 4096, about 40 s and 1 GB per PSF on one core
# The range of each number flag: checked before any work, shown in --help.
LIMITS = {"train_count": (2, MAX_COUNT), "test_count": (1, MAX_COUNT), "height": (64, MAX_SIDE),
          "width": (64, MAX_SIDE), "seed": (0, 2**32 - 1), "workers": (1, 256), "psf_count": (1, 1024),
          "psf_grid": (64, MAX_GRID), "psf_size": (16, MAX_GRID)}  # fmt: skip
OUT_OF_MEMORY = ("use a smaller --height/--width, --psf_grid/--psf_size or --psf_count, or fewer --workers; "
                 "nothing was written or replaced")  # fmt: skip


def user_scenes(folder: str | Path) -> list[Path]:
    """The readable images of ``--scenes``; one sentence if there is no such folder or fewer than two such images."""
    folder = Path(folder)
    if not folder.is_dir():
        fail(f"--scenes {folder} is not a folder; pass a folder of clean photographs.")
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
    readable = [p for p in files if inspect_image(p)[1] is None]
    if not readable:
        fail(f"--scenes {folder} holds no readable image ({', '.join(IMAGE_SUFFIXES)}); add clean photographs to it.")
    if len(readable) < 2:
        fail(f"--scenes {folder} holds only one readable image; add at least one more, so that training and test pairs "
             f"come from different photographs.")  # fmt: skip
    return readable


def check_settings(values: dict[str, int], clean_share: float = 0.0) -> None:
    """Each number flag (``values``: flag name without dashes, value) within its ``LIMITS``, the PSF grid a power of
    two that holds the stored PSF, and a ``--clean_share`` that leaves pairs with flare and makes some without."""
    for name, value in values.items():
        low, high = LIMITS[name]
        if not low <= value <= high:
            fail(f"--{name} must be {low} to {high} (got {value}).")
    grid, train_count = values["psf_grid"], values["train_count"]
    if grid & (grid - 1):
        fail(f"--psf_grid must be a power of two from {LIMITS['psf_grid'][0]} to {MAX_GRID} (got {grid}).")
    if values["psf_size"] > grid:
        fail(f"--psf_size must be 16 to --psf_grid ({grid}) pixels (got {values['psf_size']}).")
    free = flare_free_count(train_count, clean_share) if 0 <= clean_share < 1 else 0
    if not 0 <= clean_share < 1:
        fail(f"--clean_share must be from 0 to below 1 (got {clean_share!r}).")
    if train_count - free < 2:
        fail(f"--clean_share {clean_share!r} leaves {train_count - free} of {train_count} training pairs with flare; "
             f"at least two are needed: lower it or raise --train_count.")  # fmt: skip
    if clean_share > 0 and free == 0:
        fail(f"--clean_share {clean_share!r} of {train_count} training pairs makes none without flare; "
             f"raise it to at least 1/{train_count}, or leave it out.")  # fmt: skip


def check_cache(cache: Path, scenes: str | Path | None) -> Path:
    """The PSF cache folder, if it can be one: a folder (or nothing yet), outside the scenes folder."""
    if cache.is_symlink() or (cache.exists() and not cache.is_dir()):
        fail(f"{cache} is not a folder; move it away (it is where the PSF bank is cached).")
    if scenes is not None:
        a, b = cache.resolve(), Path(scenes).resolve()
        if a == b or b in a.parents or a in b.parents:
            fail(f"the PSF cache {cache} overlaps --scenes {scenes}; choose another --root or --scenes.")
    return cache


def check_demo_folders(root: Path, overwrite: bool, protected: dict | None = None) -> list[Path]:
    """The data set replaces only one this project made (its test masks included) and the patch sets cut from it,
    never a user's data; returns those patch sets (removed with the data set they came from)."""
    for folder in (*DEMO_FOLDERS, TEST_MASKS):
        check_output(data_folder(root / folder, overwrite, protected))
    patch_sets, problem = outputs_below(root / "train", "patches") if (root / "train").is_dir() else ([], None)
    if problem:
        fail(f"{problem}; move it away or choose another --root (only what this project made is replaced).")
    if patch_sets and read_manifest(root / TRAIN_ORIGINAL) is None:
        fail(
            f"{root / 'train'} holds patches of data this project did not make; move it away or choose another --root."
        )
    return patch_sets


def data_folder(path: Path, overwrite: bool, protected: dict | None = None) -> Output:
    """A folder of the data set as an owned output: only a data set this command made is replaced."""
    return Output(path, KIND, "output folder", WRITTEN_BY, overwrite, protected or {})


def output_folders(root: Path, masks: bool) -> list[Path]:
    return [root / f for f in DEMO_FOLDERS] + ([root / TEST_MASKS] if masks else [])


def generate(
    root: str | Path = "data",
    train_count: int = 12,
    test_count: int = 4,
    height: int = 576,
    width: int = 768,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 2,
    masks: bool = False,
    scenes: str | Path | None = None,
    psf: BankSettings | None = None,
    clean_share: float = 0.0,
) -> dict:
    """Write the flare data set under ``root``; returns counts, the scene sources used and the mean input PSNR.

    Every check runs before anything is written; the folders are built in staging folders and moved
    into place together; the patch sets cut from an earlier set, and its test masks if this run
    writes none, go with it. Running out of memory is one sentence, with nothing written or replaced.
    """
    psf = psf or BankSettings()
    check_settings({"train_count": train_count, "test_count": test_count, "height": height, "width": width,
                    "seed": seed, "workers": workers, "psf_count": psf.count, "psf_grid": psf.grid,
                    "psf_size": psf.size}, clean_share)  # fmt: skip
    user = split_user_images(user_scenes(scenes), train_count, test_count, seed) if scenes is not None else None
    root = Path(root)
    patch_sets = check_demo_folders(root, overwrite, {"scenes folder": scenes})
    stale = [root / TEST_MASKS] if not masks and (root / TEST_MASKS).exists() else []  # would no longer match
    job = {"psf": psf, "user": user, "seed": seed, "height": height, "width": width, "masks": masks,
           "clean_share": clean_share, "cache": check_cache(root / CACHE, scenes), "workers": workers,
           "progress": progress, "counts": (train_count, test_count), "overwrite": overwrite}  # fmt: skip
    try:
        results = _build(root, job, stale, patch_sets)
    except MemoryError as err:
        fail(f"out of memory ({one_line(err)}): {OUT_OF_MEMORY}.")
    except WorkerDied as err:
        fail(f"{err}; perhaps out of memory: {OUT_OF_MEMORY}.")
    for path in stale:
        if path.is_dir():
            remove_output(path, KIND)
    return summary(results, train_count, test_count, height, width, clean_share)


def _build(root: Path, job: dict, stale: list[Path], patch_sets: list[Path]) -> list[dict]:
    """Every folder of the data set built in its staging folder under its lock, then moved into place, and the
    earlier set's patch sets removed (only the outputs themselves: the folders around them may be a user's)."""
    masks, psf, progress = job["masks"], job["psf"], job["progress"]
    with ExitStack() as stack:
        for path in [*stale, *patch_sets]:  # removed, not replaced: locked so that no run reads them meanwhile
            stack.enter_context(output_lock(path, "output folder" if path.parent == root else "patch folder"))
        if stale and ownership_problem(stale[0], KIND):
            fail(f"{stale[0]} changed while this run started; move it away or run again.")
        stages = {p.name: stack.enter_context(owned_output(data_folder(p, job["overwrite"]))) for p in output_folders(root, masks)}  # fmt: skip
        with progress_bar(total=psf.count, desc="PSF bank", unit="psf", show=progress) as bar:
            bank = load_or_compute(job["cache"], psf, job["seed"], job["workers"], lambda it: _counting(it, bar))
        photos = {} if job["user"] is not None else {name: load_photo(name) for name in PHOTOS}
        results = write_pairs(stages, job | {"bank": bank, "photos": photos}, *job["counts"], job["workers"], progress)
        for path in patch_sets:  # the earlier set's patches: gone before the new set moves in
            remove_output(path, "patches")
    return results


def summary(
    results: list[dict], train_count: int, test_count: int, height: int, width: int, clean_share: float = 0.0
) -> dict:
    """Counts, sources and the mean input PSNR of the pairs with flare (the flare-free ones would hide its strength)."""
    flared = [r for r in results if not (r["split"] == "train" and is_flare_free(r["index"], clean_share))]
    return {
        "train": train_count,
        "test": test_count,
        "flare_free": flare_free_count(train_count, clean_share),
        "size": (height, width),
        "mean_psnr": float(np.mean([r["psnr"] for r in flared])),
        "sources": {
            split: sorted({r["source"] for r in results if r["split"] == split}) for split in ("train", "test")
        },
        "kinds": pd.Series([r["kind"] for r in results]).value_counts().to_dict(),
    }


def _counting(iterable, bar):
    for item in iterable:
        yield item
        bar.update(1)


def _number(p: argparse.ArgumentParser, name: str, default: int, help: str) -> None:
    """An integer flag whose help shows its range (``LIMITS``), which ``check_settings`` enforces."""
    low, high = LIMITS[name]
    p.add_argument(f"--{name}", type=int, default=default, help=f"{help} ({low} to {high}; default {default})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = BankSettings()
    p = argparse.ArgumentParser(description="Generate a lens-flare data set from optics, in the contest layout.")
    p.add_argument("--root", default="data", help="data folder to fill (the contest layout)")
    _number(p, "train_count", 12, "training pairs")
    _number(p, "test_count", 4, "test pairs")
    _number(p, "height", 576, "image height (the contest: 1224 or 2448)")
    _number(p, "width", 768, "image width (the contest: 1632 or 3264)")
    _number(p, "seed", 0, "the same seed gives the same files")
    _number(p, "workers", 2, "worker processes")
    p.add_argument("--masks", action="store_true", help="also write glare and streak masks of each input")
    p.add_argument("--scenes", default=None, help="folder of your own clean photographs to use as scenes")
    p.add_argument("--clean_share", type=float, default=0.0,
                   help="share of the training pairs made without flare (input = target + sensor noise), spread "
                        "evenly, so that a model also sees lamps with nothing to remove")  # fmt: skip
    _number(p, "psf_count", d.count, "PSFs in the bank")
    _number(p, "psf_grid", d.grid, "FFT grid of the PSFs, a power of two")
    _number(p, "psf_size", d.size, "side of a stored PSF in pixels, at most --psf_grid")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier data set of this project and its patches"
    )
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    psf = BankSettings(count=args.psf_count, grid=args.psf_grid, size=args.psf_size)
    info = generate(args.root, args.train_count, args.test_count, args.height, args.width, args.seed, args.overwrite,
                    not args.no_progress, args.workers, args.masks, args.scenes, psf, args.clean_share)  # fmt: skip
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(info["kinds"].items()))
    free = f", {info['flare_free']} of them without flare" if info["flare_free"] else ""
    print(f"flare data: {info['train']} training{free} and {info['test']} test pairs of {args.height}x{args.width} in "
          f"{args.root} (scenes: {kinds}); mean input PSNR of the pairs with flare {info['mean_psnr']:.2f} dB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

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
from collections.abc import Iterable, Iterator
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
from utils.core.settings import add_settings, from_args
from utils.core.workers import WorkerDied
from utils.data.images import IMAGE_SUFFIXES, inspect_image, natural_key
from utils.data.layout import TEST_INPUT, TEST_LABEL, TEST_MASKS, TRAIN_ORIGINAL
from utils.flare.bank import load_or_compute
from utils.flare.data_settings import FlareDataSettings, check_settings
from utils.flare.pairs import FlareJob, SceneSettings, flare_free_count, is_flare_free
from utils.flare.scenes import MORE_PHOTOS, PHOTOS, load_photo, split_user_images

KIND = "demo data"
WRITTEN_BY = "scripts.flare_data"
DEMO_FOLDERS = (TRAIN_ORIGINAL, TEST_INPUT, TEST_LABEL)  # and TEST_MASKS, written with --masks
CACHE = ".flare_cache"
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


def generate(settings: FlareDataSettings) -> dict:
    """Write the flare data set of ``settings``; returns counts, the scene sources used and the mean input PSNR.

    Every check runs before anything is written; the folders are built in staging folders and moved
    into place together; the patch sets cut from an earlier set, and its test masks if this run
    writes none, go with it. Running out of memory is one sentence, with nothing written or replaced.
    """
    s = settings
    check_settings(s)
    user = None if s.scenes is None else split_user_images(user_scenes(s.scenes), s.train_count, s.test_count, s.seed)
    root = Path(s.root)
    patch_sets = check_demo_folders(root, s.overwrite, {"scenes folder": s.scenes})
    stale = [root / TEST_MASKS] if not s.masks and (root / TEST_MASKS).exists() else []  # would no longer match
    cache = check_cache(root / CACHE, s.scenes)
    try:
        results = _build(s, user, cache, stale, patch_sets)
    except MemoryError as err:
        fail(f"out of memory ({one_line(err)}): {OUT_OF_MEMORY}.")
    except WorkerDied as err:
        fail(f"{err}; perhaps out of memory: {OUT_OF_MEMORY}.")
    for path in stale:
        if path.is_dir():
            remove_output(path, KIND)
    return summary(results, s)


def _build(
    settings: FlareDataSettings,
    user: dict[str, list[Path]] | None,
    cache: Path,
    stale: list[Path],
    patch_sets: list[Path],
) -> list[dict]:
    """Every folder of the data set built in its staging folder under its lock, then moved into place, and the
    earlier set's patch sets removed (only the outputs themselves: the folders around them may be a user's)."""
    root, masks = Path(settings.root), settings.masks
    with ExitStack() as stack:
        for path in [*stale, *patch_sets]:  # removed, not replaced: locked so that no run reads them meanwhile
            stack.enter_context(output_lock(path, "output folder" if path.parent == root else "patch folder"))
        if stale and ownership_problem(stale[0], KIND):
            fail(f"{stale[0]} changed while this run started; move it away or run again.")
        stages = {p.name: stack.enter_context(owned_output(data_folder(p, settings.overwrite))) for p in output_folders(root, masks)}  # fmt: skip
        with progress_bar(total=settings.psf_count, desc="PSF bank", unit="psf", show=settings.progress) as bar:
            bank = load_or_compute(
                cache, settings.bank(), settings.seed, settings.workers, lambda it: _counting(it, bar)
            )
        names = [*PHOTOS, *(MORE_PHOTOS if settings.more_photos else ())]
        photos = None if user is not None else {name: load_photo(name) for name in names}  # loaded once
        scenes = SceneSettings(settings.seed, settings.height, settings.width, user, photos, settings.more_photos,
                               settings.phone_flare)  # fmt: skip
        job = FlareJob(scenes, bank, masks, settings.clean_share, settings.phone_flare, settings.night)
        results = write_pairs(job, stages, settings, cache)
        for path in patch_sets:  # the earlier set's patches: gone before the new set moves in
            remove_output(path, "patches")
    return results


def summary(results: list[dict], settings: FlareDataSettings) -> dict:
    """Counts, sources and the mean input PSNR of the pairs with flare (the flare-free ones would hide its strength)."""
    share = settings.clean_share
    flared = [r for r in results if not (r["split"] == "train" and is_flare_free(r["index"], share))]
    return {
        "train": settings.train_count,
        "test": settings.test_count,
        "flare_free": flare_free_count(settings.train_count, share),
        "size": (settings.height, settings.width),
        "mean_psnr": float(np.mean([r["psnr"] for r in flared])),
        "sources": {
            split: sorted({r["source"] for r in results if r["split"] == split}) for split in ("train", "test")
        },
        "kinds": pd.Series([r["kind"] for r in results]).value_counts().to_dict(),
    }


def _counting(iterable: Iterable, bar) -> Iterator:
    for item in iterable:
        yield item
        bar.update(1)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``FlareDataSettings`` (defaults, ranges and help live there)."""
    p = argparse.ArgumentParser(description="Generate a lens-flare data set from optics, in the contest layout.")
    add_settings(p, FlareDataSettings)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    settings = from_args(FlareDataSettings, parse_args(argv))
    info = generate(settings)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(info["kinds"].items()))
    free = f", {info['flare_free']} of them without flare" if info["flare_free"] else ""
    print(f"flare data: {info['train']} training{free} and {info['test']} test pairs of {settings.height}x"
          f"{settings.width} in {settings.root} (scenes: {kinds}); mean input PSNR of the pairs with flare "
          f"{info['mean_psnr']:.2f} dB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

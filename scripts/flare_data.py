"""A paired lens-flare data set in the contest's layout, with flare computed from optics (``utils.flare``).

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

The PSF bank is computed once per settings and seed and cached in <root>/.flare_cache/.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from scripts.demo_data import DEMO_FOLDERS, check_demo_folders
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.locks import output_lock
from utils.core.log import progress_bar
from utils.core.manifest import ownership_problem, remove_output
from utils.core.outputs import check_output_folder, staged_dir
from utils.data.images import IMAGE_SUFFIXES, inspect_image, natural_key
from utils.data.layout import INPUT_FOLDER, LABEL_FOLDER
from utils.flare.pairs import make_pair
from utils.flare.psf import BankSettings, load_or_compute
from utils.flare.scenes import PHOTOS, load_photo, split_user_images

KIND = "demo data"
WRITTEN_BY = "scripts.flare_data"
TRAIN_MASKS = "train_mask_img"  # inside train_original
TEST_MASKS = "test_mask_img"
CACHE = ".flare_cache"
MAX_COUNT = 10000  # names run from 10000 (train) and 20000 (test), five digits each
MAX_SIDE = 8192

_JOB: dict = {}  # what the forked workers share with the parent: the bank, photos, staging folders, settings


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


def check_settings(train_count, test_count, height, width, workers, psf: BankSettings) -> None:
    if not 2 <= train_count <= MAX_COUNT or not 1 <= test_count <= MAX_COUNT:
        fail(f"--train_count must be 2 to {MAX_COUNT} and --test_count 1 to {MAX_COUNT} "
             f"(got {train_count} and {test_count}).")  # fmt: skip
    if not (64 <= height <= MAX_SIDE and 64 <= width <= MAX_SIDE):
        fail(f"--height and --width must be 64 to {MAX_SIDE} pixels (got {height}x{width}).")
    if workers < 1:
        fail(f"--workers must be at least 1 (got {workers}).")
    if psf.count < 1:
        fail(f"--psf_count must be at least 1 (got {psf.count}).")
    if psf.grid < 64 or psf.grid & (psf.grid - 1):
        fail(f"--psf_grid must be a power of two of at least 64 (got {psf.grid}).")
    if not 16 <= psf.size <= psf.grid:
        fail(f"--psf_size must be 16 to --psf_grid ({psf.grid}) pixels (got {psf.size}).")


def check_cache(cache: Path, scenes: str | Path | None) -> Path:
    """The PSF cache folder, if it can be one: a folder (or nothing yet), outside the scenes folder."""
    if cache.is_symlink() or (cache.exists() and not cache.is_dir()):
        fail(f"{cache} is not a folder; move it away (it is where the PSF bank is cached).")
    if scenes is not None:
        a, b = cache.resolve(), Path(scenes).resolve()
        if a == b or b in a.parents or a in b.parents:
            fail(f"the PSF cache {cache} overlaps --scenes {scenes}; choose another --root or --scenes.")
    return cache


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
) -> dict:
    """Write the flare data set under ``root``; returns counts, the scene sources used and the mean input PSNR.

    Every check runs before anything is written; the folders are built in staging folders and moved
    into place together; the patch sets cut from an earlier demo set, and its test masks if this run
    writes none, go with it.
    """
    psf = psf or BankSettings()
    check_settings(train_count, test_count, height, width, workers, psf)
    user = None
    if scenes is not None:
        user = split_user_images(user_scenes(scenes), train_count, test_count, seed)
    root = Path(root)
    protected = {"scenes folder": scenes}
    for folder in output_folders(root, masks):
        check_output_folder(folder, "output folder", overwrite, KIND, protected)
    stale_masks = None
    if not masks and (root / TEST_MASKS).exists():  # an earlier set's masks would no longer match
        check_output_folder(root / TEST_MASKS, "output folder", overwrite, KIND, protected)
        stale_masks = root / TEST_MASKS
    patch_sets = check_demo_folders(root, overwrite)
    cache = check_cache(root / CACHE, scenes)
    with ExitStack() as stack:
        folders = output_folders(root, masks) + ([stale_masks] if stale_masks else [])
        for path in [*folders, *patch_sets]:
            stack.enter_context(output_lock(path, "output folder" if path.parent == root else "patch folder"))
        if stale_masks is not None and ownership_problem(stale_masks, KIND):
            fail(f"{stale_masks} changed while this run started; move it away or run again.")
        stages = {p.name: stack.enter_context(staged_dir(p, KIND, WRITTEN_BY)) for p in output_folders(root, masks)}
        bar = progress_bar(total=psf.count, desc="PSF bank", unit="psf", show=progress)
        with bar:
            bank = load_or_compute(cache, psf, seed, workers, progress=lambda it: _counting(it, bar))
        photos = {} if user is not None else {name: load_photo(name) for name in PHOTOS}
        results = _write_pairs(stages, bank, photos, user, train_count, test_count, height, width, seed, masks,
                               workers, progress)  # fmt: skip
        for path in patch_sets:  # the earlier set's patches: gone before the new set moves in
            remove_output(path, "patches")
    if stale_masks is not None and stale_masks.is_dir():
        remove_output(stale_masks, KIND)
    _remove_empty_dirs(root / "train")
    kinds = pd.Series([r["kind"] for r in results]).value_counts().to_dict()
    return {
        "train": train_count,
        "test": test_count,
        "size": (height, width),
        "mean_psnr": float(np.mean([r["psnr"] for r in results])),
        "sources": {
            split: sorted({r["source"] for r in results if r["split"] == split}) for split in ("train", "test")
        },
        "kinds": kinds,
    }


def _counting(iterable, bar):
    for item in iterable:
        yield item
        bar.update(1)


def _remove_empty_dirs(folder: Path) -> None:
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in folder.iterdir():
        _remove_empty_dirs(sub)
    if not any(folder.iterdir()):
        folder.rmdir()


def pair_paths(stages: dict[str, Path], split: str, index: int, masks: bool) -> dict[str, Path]:
    """Where the files of pair ``index`` of ``split`` go, in the staging folders."""
    if split == "train":
        idx, base = 10000 + index, stages["train_original"]
        paths = {"input": base / INPUT_FOLDER / f"train_input_{idx}.png",
                 "target": base / LABEL_FOLDER / f"train_label_{idx}.png"}  # fmt: skip
        mask_dir = base / TRAIN_MASKS
    else:
        idx = 20000 + index
        paths = {"input": stages["test_input_img"] / f"test_input_{idx}.png",
                 "target": stages["test_label_img"] / f"test_label_{idx}.png"}  # fmt: skip
        mask_dir = stages.get(TEST_MASKS)
    if masks:
        paths["glare"] = mask_dir / f"{split}_glare_{idx}.png"
        paths["streak"] = mask_dir / f"{split}_streak_{idx}.png"
    return paths


def write_png(path: Path, image: np.ndarray) -> None:
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def _one_pair(task: tuple[str, int]) -> dict:
    """Make and write one pair (in a worker or in the parent); returns what the summary needs."""
    split, index = task
    job = _JOB
    pair, source = make_pair(split, index, job["seed"], job["height"], job["width"], job["bank"], job["user"],
                             job["photos"], job["masks"])  # fmt: skip
    paths = pair_paths(job["stages"], split, index, job["masks"])
    write_png(paths["input"], pair.input)
    write_png(paths["target"], pair.target)
    if job["masks"]:
        write_png(paths["glare"], pair.glare)
        write_png(paths["streak"], pair.streak)
    name = Path(source.name).name if source.kind == "user" else source.name
    return {"split": split, "index": index, "psnr": pair.psnr, "kind": source.kind, "source": f"{source.kind}:{name}"}


def _write_pairs(stages, bank, photos, user, train_count, test_count, height, width, seed, masks, workers, progress):
    original = stages["train_original"]
    for sub in (INPUT_FOLDER, LABEL_FOLDER, *([TRAIN_MASKS] if masks else [])):
        (original / sub).mkdir()
    _JOB.clear()
    _JOB.update(bank=bank, photos=photos, user=user, stages=stages, seed=seed, height=height, width=width, masks=masks)
    tasks = [("train", i) for i in range(train_count)] + [("test", i) for i in range(test_count)]
    results: list[dict] = []
    try:
        with progress_bar(total=len(tasks), desc="flare pairs", unit="pair", show=progress) as bar:
            if workers == 1:
                for task in tasks:
                    results.append(_one_pair(task))
                    bar.update(1)
            else:
                from utils.data.workers import TaskFailed, WorkerDied, run_tasks

                names = [f"{s} pair {i}" for s, i in tasks]
                try:
                    for index, out in run_tasks(_one_pair, tasks, workers, names):
                        if isinstance(out, TaskFailed):
                            fail(f"{names[index]} failed ({out}); check the disk and --scenes, then run again.")
                        results.append(out)
                        bar.update(1)
                except WorkerDied as err:
                    fail(f"{err}; perhaps out of memory: use fewer --workers or a smaller --height/--width.")
    except OSError as err:
        fail(f"{err}; check the disk and the folder's permissions, then run again.")
    finally:
        _JOB.clear()
    rows = [{"img_id": 10000 + r["index"], "input_img": f"train_input_{10000 + r['index']}.png",
             "label_img": f"train_label_{10000 + r['index']}.png"}
            for r in sorted(results, key=lambda r: r["index"]) if r["split"] == "train"]  # fmt: skip
    pd.DataFrame(rows, columns=["img_id", "input_img", "label_img"]).to_csv(original / "train.csv", index=False)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = BankSettings()
    p = argparse.ArgumentParser(description="Generate a lens-flare data set from optics, in the contest layout.")
    p.add_argument("--root", default="data", help="data folder to fill (the contest layout)")
    p.add_argument("--train_count", type=int, default=12)
    p.add_argument("--test_count", type=int, default=4)
    p.add_argument("--height", type=int, default=576, help="image height (the contest: 1224 or 2448)")
    p.add_argument("--width", type=int, default=768, help="image width (the contest: 1632 or 3264)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same files")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--masks", action="store_true", help="also write glare and streak masks of each input")
    p.add_argument("--scenes", default=None, help="folder of your own clean photographs to use as scenes")
    p.add_argument("--psf_count", type=int, default=d.count, help="PSFs in the bank")
    p.add_argument("--psf_grid", type=int, default=d.grid, help="FFT grid of the PSFs (a power of two)")
    p.add_argument("--psf_size", type=int, default=d.size, help="side of a stored PSF, in pixels")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier data set of this project and its patches"
    )
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    psf = BankSettings(count=args.psf_count, grid=args.psf_grid, size=args.psf_size)
    info = generate(args.root, args.train_count, args.test_count, args.height, args.width, args.seed, args.overwrite,
                    not args.no_progress, args.workers, args.masks, args.scenes, psf)  # fmt: skip
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(info["kinds"].items()))
    print(f"flare data: {info['train']} training and {info['test']} test pairs of {args.height}x{args.width} in "
          f"{args.root} (scenes: {kinds}); mean input PSNR {info['mean_psnr']:.2f} dB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

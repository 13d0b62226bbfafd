"""The files of ``scripts.flare_data``: each pair made and written into the staging folders, in worker processes.

Names follow the contest's layout (``utils.data.layout``): training pairs are numbered from 10000,
test pairs from 20000; the masks, with ``--masks``, lie beside the label folders. Every pair draws
from its own random stream (``utils.flare.pairs``), so the files are the same whatever the number
of workers and the order in which they finish. A pair that cannot be right (``pair_problem``) is
not written, and stops the run before anything is replaced.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from utils.core.errors import fail
from utils.core.log import progress_bar
from utils.data.layout import INPUT_FOLDER, LABEL_FOLDER, MASK_KINDS, TEST_MASKS, TRAIN_MASKS, mask_name
from utils.flare.bank import raise_if_memory
from utils.flare.composite import FlarePair
from utils.flare.pairs import make_pair

_JOB: dict = {}  # what the forked workers share with the parent: the bank, photos, staging folders, settings


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
        paths |= {kind: mask_dir / mask_name(paths["input"].name, kind) for kind in MASK_KINDS}
    return paths


def write_png(path: Path, image: np.ndarray) -> None:
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def pair_problem(pair: FlarePair) -> str | None:
    """What makes ``pair`` impossible, or None. Never true of a valid pair: its images are finite in linear light,
    and where the target is white (255, linear 0.9957 or more) the input, which adds flare (never negative) and
    sensor noise (8.3 standard deviations of at most 0.0175 at the very most), cannot be black in every pixel."""
    if not pair.finite:
        return "with pixels that are not numbers (NaN or infinite)"
    white = pair.target == 255
    if white.any() and pair.input[white].max() == 0:
        return "with an input that is black where its target is white"
    return None


def _one_pair(task: tuple[str, int]) -> dict:
    """Make and write one pair (in a worker or in the parent); returns what the summary needs, or the pair's
    problem (``pair_problem``) with nothing written."""
    split, index = task
    job = _JOB
    pair, source = make_pair(split, index, job["seed"], job["height"], job["width"], job["bank"], job["user"],
                             job["photos"], job["masks"], job["clean_share"])  # fmt: skip
    problem = pair_problem(pair)
    if problem:
        return {"split": split, "index": index, "problem": problem}
    paths = pair_paths(job["stages"], split, index, job["masks"])
    write_png(paths["input"], pair.input)
    write_png(paths["target"], pair.target)
    if job["masks"]:
        write_png(paths["glare"], pair.glare)
        write_png(paths["streak"], pair.streak)
    name = Path(source.name).name if source.kind == "user" else source.name
    return {"split": split, "index": index, "psnr": pair.psnr, "kind": source.kind, "source": f"{source.kind}:{name}"}


def _checked(result: dict, cache: Path) -> dict:
    """``result`` of ``_one_pair``, or one sentence if its pair came out impossible."""
    if "problem" in result:
        fail(f"{result['split']} pair {result['index']} came out {result['problem']}, so nothing was replaced; "
             f"the PSF bank cached in {cache} may be damaged: delete that folder and run again.")  # fmt: skip
    return result


def _run_tasks(tasks: list[tuple[str, int]], workers: int, progress: bool, cache: Path) -> list[dict]:
    """``_one_pair`` of every task, in the parent (one worker) or in forked workers; a failure is one sentence, a
    worker out of memory a MemoryError (and a dead worker ``WorkerDied``) for the caller to report."""
    results: list[dict] = []
    with progress_bar(total=len(tasks), desc="flare pairs", unit="pair", show=progress) as bar:
        if workers == 1:
            for task in tasks:
                results.append(_checked(_one_pair(task), cache))
                bar.update(1)
            return results
        from utils.data.workers import TaskFailed, run_tasks

        names = [f"{s} pair {i}" for s, i in tasks]
        for index, out in run_tasks(_one_pair, tasks, workers, names):
            if isinstance(out, TaskFailed):
                raise_if_memory(out)
                fail(f"{names[index]} failed ({out}); check the disk and --scenes, then run again.")
            results.append(_checked(out, cache))
            bar.update(1)
    return results


def write_pairs(stages: dict[str, Path], job: dict, train_count: int, test_count: int, workers: int,
                progress: bool) -> list[dict]:  # fmt: skip
    """Every pair into the staging folders, and train.csv; returns per pair its split, index, input PSNR and source.

    ``job``: the bank, photos (name: image), user images (split: paths, or None), seed, height, width, masks,
    clean_share, and cache (the PSF cache folder, named if a pair comes out impossible).
    """
    original = stages["train_original"]
    for sub in (INPUT_FOLDER, LABEL_FOLDER, *([TRAIN_MASKS] if job["masks"] else [])):
        (original / sub).mkdir()
    _JOB.clear()
    _JOB.update(job, stages=stages)
    tasks = [("train", i) for i in range(train_count)] + [("test", i) for i in range(test_count)]
    try:
        results = _run_tasks(tasks, workers, progress, job["cache"])
    except OSError as err:
        fail(f"{err}; check the disk and the folder's permissions, then run again.")
    finally:
        _JOB.clear()
    rows = [{"img_id": 10000 + r["index"], "input_img": f"train_input_{10000 + r['index']}.png",
             "label_img": f"train_label_{10000 + r['index']}.png"}
            for r in sorted(results, key=lambda r: r["index"]) if r["split"] == "train"]  # fmt: skip
    pd.DataFrame(rows, columns=["img_id", "input_img", "label_img"]).to_csv(original / "train.csv", index=False)
    return results

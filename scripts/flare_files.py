"""The files of ``scripts.flare_data``: each pair made and written into the staging folders, in worker processes.

Names follow the contest's layout (``utils.data.layout``): training pairs are numbered from 10000,
test pairs from 20000; the masks, with ``--masks``, lie beside the label folders. Every pair draws
from its own random stream (``utils.flare.pairs``), so the files are the same whatever the number
of workers and the order in which they finish. A pair that cannot be right (``pair_problem``) is
not written, and stops the run before anything is replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from utils.core.errors import fail
from utils.core.log import progress_bar
from utils.data.layout import INPUT_FOLDER, LABEL_FOLDER, MASK_KINDS, TEST_MASKS, TRAIN_MASKS, mask_name
from utils.flare.bank import raise_if_memory
from utils.flare.composite import FlarePair
from utils.flare.data_settings import FlareDataSettings
from utils.flare.pairs import FlareJob, make_pair

Task = tuple[str, int]  # a pair's split and index


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


def _one_pair(job: FlareJob, stages: dict[str, Path], task: Task) -> dict:
    """Make one pair and write it into ``stages`` (in a worker or in the parent); returns what the summary needs, or
    the pair's problem (``pair_problem``) with nothing written."""
    split, index = task
    pair, source = make_pair(job, split, index)
    problem = pair_problem(pair)
    if problem:
        return {"split": split, "index": index, "problem": problem}
    paths = pair_paths(stages, split, index, job.masks)
    write_png(paths["input"], pair.input)
    write_png(paths["target"], pair.target)
    if job.masks:
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


def _run_tasks(
    one_pair: Callable[[Task], dict], tasks: list[Task], settings: FlareDataSettings, cache: Path
) -> list[dict]:
    """``one_pair`` of every task, in the parent (one worker) or in forked workers; a failure is one sentence, a
    worker out of memory a MemoryError (and a dead worker ``WorkerDied``) for the caller to report."""
    results: list[dict] = []
    with progress_bar(total=len(tasks), desc="flare pairs", unit="pair", show=settings.progress) as bar:
        if settings.workers == 1:
            for task in tasks:
                results.append(_checked(one_pair(task), cache))
                bar.update(1)
            return results
        from utils.core.workers import TaskFailed, run_tasks

        names = [f"{s} pair {i}" for s, i in tasks]
        for index, out in run_tasks(one_pair, tasks, settings.workers, names):
            if isinstance(out, TaskFailed):
                raise_if_memory(out)
                fail(f"{names[index]} failed ({out}); check the disk and --scenes, then run again.")
            results.append(_checked(out, cache))
            bar.update(1)
    return results


def write_pairs(job: FlareJob, stages: dict[str, Path], settings: FlareDataSettings, cache: Path) -> list[dict]:
    """Every pair of ``job`` into the staging folders ``stages``, and train.csv; returns per pair its split, index,
    input PSNR and source. ``settings``: the counts, workers and progress bar; ``cache``: the PSF cache folder,
    named if a pair comes out impossible."""
    original = stages["train_original"]
    for sub in (INPUT_FOLDER, LABEL_FOLDER, *([TRAIN_MASKS] if job.masks else [])):
        (original / sub).mkdir()
    tasks = [("train", i) for i in range(settings.train_count)] + [("test", i) for i in range(settings.test_count)]
    try:
        results = _run_tasks(partial(_one_pair, job, stages), tasks, settings, cache)  # forked workers inherit job
    except OSError as err:
        fail(f"{err}; check the disk and the folder's permissions, then run again.")
    rows = [{"img_id": 10000 + r["index"], "input_img": f"train_input_{10000 + r['index']}.png",
             "label_img": f"train_label_{10000 + r['index']}.png"}
            for r in sorted(results, key=lambda r: r["index"]) if r["split"] == "train"]  # fmt: skip
    pd.DataFrame(rows, columns=["img_id", "input_img", "label_img"]).to_csv(original / "train.csv", index=False)
    return results

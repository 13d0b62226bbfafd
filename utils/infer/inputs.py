"""test.py's inputs: the images to restore, checked before any work, their clean targets, and output names."""

from __future__ import annotations

import re
from pathlib import Path

from utils.core.errors import fail
from utils.data.images import inspect_image, list_images


def submission_name(input_name: str) -> str:
    """``test_input_20000.png`` becomes ``test_20000.png``; other names are kept (as PNG)."""
    stem = Path(input_name).stem
    match = re.fullmatch(r"test_input_(.+)", stem)
    return f"test_{match.group(1)}.png" if match else f"{stem}.png"


def find_target(eval_dir: Path, input_name: str) -> Path | None:
    """The clean image of an input: the same name, or with ``input`` replaced by ``label``."""
    for name in (input_name, input_name.replace("input", "label")):
        if (eval_dir / name).is_file():
            return eval_dir / name
    return None


def check_input_folder(input_dir: Path) -> dict[Path, tuple[int, int]]:
    """Every image of the input folder with its (height, width), each checked to be usable, before any work."""
    if input_dir.is_file():
        fail(f"--input_dir {input_dir} is a file, not a folder; give its folder, or restore one photo with python restore.py {input_dir}.")  # fmt: skip
    if not input_dir.is_dir():
        fail(f"input folder {input_dir} does not exist; put the test images there or pass --input_dir.")
    images = list_images(input_dir)
    if not images:
        fail(f"input folder {input_dir} holds no images (png, jpg, bmp or tif).")
    inspected = {p: inspect_image(p) for p in images}
    problems = [problem for _, problem in inspected.values() if problem is not None]
    if problems:
        fail(f"{len(problems)} input image(s) cannot be used: {'; '.join(problems[:3])}.")
    names: dict[str, str] = {}
    for p in images:
        other = names.setdefault(submission_name(p.name), p.name)
        if other != p.name:
            fail(f"{other} and {p.name} would both be written as {submission_name(p.name)}; rename one of them.")
    return {p: size for p, (size, _) in inspected.items()}


def check_targets(eval_dir: Path, images: dict[Path, tuple[int, int]]) -> dict[str, Path]:
    """The clean image of every input (given with its size), each readable and of the input's size."""
    if not eval_dir.is_dir():
        fail(f"--eval_dir {eval_dir} does not exist.")
    targets = {}
    for p, (h, w) in images.items():
        target = find_target(eval_dir, p.name)
        if target is None:
            fail(f"--eval_dir {eval_dir} has no clean image for {p.name}.")
        if target.resolve() == p.resolve():
            fail(
                f"--eval_dir {eval_dir} is the input folder {p.parent}: each input would be scored against itself "
                f"(a perfect, meaningless score); pass the folder of the clean images."
            )
        size, problem = inspect_image(target)
        if problem is not None:
            fail(f"--eval_dir: {problem}.")
        if size != (h, w):
            fail(f"clean image {target.name} is {size[1]}x{size[0]} but the input {p.name} is {w}x{h}.")
        targets[p.name] = target
    return targets

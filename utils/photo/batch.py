"""restore.py on files: which photos, where each result goes, checked before any work; then one photo at a time.

Every result is written whole or not at all (``owned_output``), replaces only a photo restored earlier, and a
photo that cannot be read is named in one sentence while the others are still restored.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from utils.core.errors import UserError, fail
from utils.core.owned import Output, check_output, owned_output
from utils.infer.restore import Model, restore_rgb
from utils.photo.api import photo_options, unchanged_note
from utils.photo.files import (
    RESTORED,
    SUFFIXES,
    check_header,
    encode_photo,
    is_restored,
    opened_image,
    read_photo,
    restored_path,
)
from utils.photo.progress import Progress, estimate_seconds
from utils.photo.settings import PhotoOutput, PhotoSettings


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path
    megapixels: float


def photo_files(given: list[str]) -> tuple[list[Path], list[str]]:
    """The photos among ``given`` (files, and the photos directly in folders, leaving restorations out); the
    files of those folders that are not photos, to be named."""
    if not given:
        fail("give the photos or folders to restore (restore.py photo.jpg my_photos/), or --serve for the web page.")
    photos, others = [], []
    for name in given:
        path = Path(name)
        if path.is_file():
            photos.append(path)
        elif path.is_dir():
            found = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
            mine = [p for p in found if p.suffix.lower() in SUFFIXES and not p.stem.endswith(RESTORED)]
            others += [str(p) for p in found if p.suffix.lower() not in SUFFIXES]
            if not mine:
                fail(f"folder {path} holds no photos to restore (JPEG, PNG, WebP, HEIC, TIFF or BMP).")
            photos += mine
        else:
            fail(f"{path} does not exist; give a photo or a folder of photos.")
    return photos, others


def plan(given: list[str], settings: PhotoSettings, out: PhotoOutput) -> tuple[list[Job], list[str]]:
    """One job per photo that can be restored, and a sentence per photo that cannot (read from its header
    only); refused whole, before anything is written, where an output cannot be written. The files of a folder
    that are not photos are named in one line."""
    folder = Path(out.output) if out.output else None
    if folder is not None and folder.exists() and not folder.is_dir():
        fail(f"--output {folder} is a file, not a folder; give the folder to write the restored photos into.")
    photos, others = photo_files(given)
    if others:
        print(f"skipping {len(others)} file(s) that are not photos: {', '.join(others)}", file=sys.stderr)
    jobs, refused, targets, sources = [], [], {}, set()
    for source in photos:
        same = os.path.abspath(source)  # a link to a photo is a photo of its own, restored beside the link
        if same in sources:  # given twice, or given and in a folder given: restored once
            continue
        sources.add(same)
        target = restored_path(source, folder)
        if target.resolve() in targets:
            fail(f"{source} and {targets[target.resolve()]} would both be restored to {target}; restore them apart.")
        targets[target.resolve()] = source
        try:
            with opened_image(source, str(source)) as image:
                check_header(image, str(source), settings.max_megapixels)
                megapixels = image.width * image.height / 1e6
        except UserError as err:
            refused.append(str(err))
            continue
        if folder is None:
            _check_beside(source, target)
        check_output(_output(target, out.overwrite))
        jobs.append(Job(source, target, megapixels))
    return jobs, refused


def _check_beside(source: Path, target: Path) -> None:
    """A restoration beside its photo (no ``--output``): refused in words about the photo's folder.

    ``check_output`` makes the same two checks, but its sentences name a flag and ask for another one; here no
    flag was given, so these come first and say what to do instead."""
    if target.is_symlink():
        fail(f"{target} is a symbolic link; move it away, or write the restorations elsewhere with --output DIR.")
    if not os.access(target.parent, os.W_OK | os.X_OK):
        fail(
            f"cannot write beside {source}: no write permission in {target.parent}; write the restorations "
            f"elsewhere with --output DIR."
        )


def _output(target: Path, overwrite: bool) -> Output:
    return Output(target, "a photo restored by restore.py", "--output", "restore.py", overwrite, ours=is_restored)


def restore_files(jobs: list[Job], models: list[Model], settings: PhotoSettings, out: PhotoOutput) -> list[str]:
    """Restore each job's photo into its target; returns a sentence per photo that failed."""
    opts = photo_options(settings)
    megapixels = sum(j.megapixels for j in jobs)
    on = "" if models[0].device.type != "cpu" else " on 2 CPU cores"
    print(f"restoring {len(jobs)} photo(s), {megapixels:.1f} megapixels: about "
          f"{sum(estimate_seconds(j.megapixels) for j in jobs):.0f} s{on}", file=sys.stderr)  # fmt: skip
    progress, failed = Progress([j.megapixels for j in jobs], out.progress), []
    try:
        for job in jobs:
            start = time.monotonic()
            try:
                photo = read_photo(job.source, str(job.source), settings.max_megapixels)
                rgb = restore_rgb(photo.rgb, models, opts, job.source.name, on_progress=progress.within)
                with owned_output(_output(job.target, out.overwrite)) as tmp:
                    tmp.write_bytes(encode_photo(rgb, photo, settings.quality))
                seconds = f"{time.monotonic() - start:.1f} s"
                note = unchanged_note(photo.rgb, settings)
                note = f": {note}; --light_reach 0 lets the model change it anyway" if note else ""
                progress.bar.write(f"{job.target} ({seconds}){note}", file=sys.stderr)
            except UserError as err:
                failed.append(str(err))
                progress.bar.write(f"error: {err}", file=sys.stderr)
            progress.photo_done()
    finally:
        progress.stop()
    return failed

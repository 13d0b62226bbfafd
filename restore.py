"""Restore your own photos: the glare and flare around lights removed, the rest of the photo kept.

python restore.py photo.jpg my_photos/          # photo_restored.jpg beside each photo, EXIF kept
python restore.py my_photos --output restored    # or all into one folder
python restore.py --serve                        # a local web page: drop photos, compare, download

The shipped starter model restores unless --weights names another checkpoint (test.py's, main.py's or the
original solution's); the same restoration is ``utils.photo.restore_image`` for Python programs.
"""

from __future__ import annotations

import argparse
import sys

from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.settings import add_settings, check_ranges, from_args
from utils.photo.api import photo_models
from utils.photo.batch import plan, restore_files
from utils.photo.settings import PHOTO_SETTINGS


def build_parser() -> argparse.ArgumentParser:
    """The photos to restore, then the flags of ``PHOTO_SETTINGS``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="*", help="photos, and folders whose photos are all restored")
    for cls in PHOTO_SETTINGS:
        add_settings(p, cls)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings, out, page = (from_args(cls, args) for cls in PHOTO_SETTINGS)
    problems = check_ranges(settings) + check_ranges(out) + check_ranges(page)
    if problems:
        fail(problems[0] + ".")
    if page.serve:
        if args.photos:
            fail("--serve restores the photos dropped on its page; give either photos or --serve, not both.")
        from utils.photo.server import serve

        return serve(settings, page)
    models = photo_models(settings)
    jobs, refused = plan(args.photos, settings, out)
    if not jobs:
        fail(refused[0] if len(refused) == 1 else f"none of the {len(refused)} files given is a photo that can be restored.")  # fmt: skip
    for sentence in refused:
        print(f"error: {sentence}", file=sys.stderr)
    failed = restore_files(jobs, models, settings, out)
    total = len(jobs) + len(refused)
    print(f"{len(jobs) - len(failed)} of {total} photo(s) restored", file=sys.stderr)
    return 2 if failed or refused else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

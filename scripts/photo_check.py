"""How a restoration treated your own photos, which have no clean targets (``utils.infer.photo_check``).

    python test.py --weights pretrained/hinet_flare_starter.pth --input_dir photos --output_dir restored \\
        --blend window --work_size 1024 --no_zip
    python -m scripts.photo_check --photos photos --restored restored

Per photo: the share of the glow around its lights that was removed, how bright its lamps stayed, and the
colour change (CIE76) more than 96 pixels from every light; then the means. Goals of the starter model: lamps
at least 90% as bright, colour change below 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.data.images import list_images, read_rgb
from utils.infer.inputs import submission_name
from utils.infer.photo_check import PhotoScores, photo_scores
from utils.metrics import mean_defined


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", required=True, help="folder of the photos as they were restored")
    p.add_argument("--restored", required=True, help="the folder test.py wrote (its PNG of each photo)")
    return p.parse_args(argv)


def restored_of(photo: Path, restored: Path) -> Path:
    """test.py's output for ``photo``, by the name test.py gives it; one sentence if it is missing."""
    path = restored / submission_name(photo.name)
    if not path.is_file():
        fail(f"{restored} holds no {path.name} for {photo}; restore the photos into it with test.py first.")
    return path


def check_folder(photos: Path, restored: Path) -> dict[str, PhotoScores]:
    """Each photo's scores, by name."""
    if not photos.is_dir() or not restored.is_dir():
        fail(f"{photos if not photos.is_dir() else restored} is not a folder; pass --photos and --restored folders.")
    names = list_images(photos)
    if not names:
        fail(f"{photos} holds no image; pass the folder of photos that test.py restored.")
    scores = {}
    for photo in names:
        restored_path = restored_of(photo, restored)
        rgb, out = read_rgb(photo), read_rgb(restored_path)
        if rgb.shape != out.shape:
            fail(f"{restored_path} is {out.shape[1]}x{out.shape[0]}, not the size of {photo}; restore it again.")
        scores[photo.name] = photo_scores(rgb, out)
    return scores


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scores = check_folder(Path(args.photos), Path(args.restored))
    print(f"{'photo':<32} {'glare removed':>14} {'lamps kept':>11} {'colour change far':>18}")
    rows = [*scores.items(), ("mean", PhotoScores(*(mean_defined([getattr(s, k) for s in scores.values()])
                                                      for k in ("glare_removed", "cores_kept", "colour_change"))))]  # fmt: skip
    for name, s in rows:
        print(f"{name:<32} {s.glare_removed:>13.1%} {s.cores_kept:>10.1%} {s.colour_change:>18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""How a restoration treated your own photos, which have no clean targets (``utils.infer.photo_check``).

    python restore.py photos                                       # photos/NAME_restored.EXT
    python -m scripts.photo_check --photos photos --restored photos --sheet check.png

The restorations are found under restore.py's names (``NAME_restored.EXT``) or test.py's (``NAME.png``).

Per photo: the share of the glow around its lights that was removed, how bright its lamps stayed, and the
colour change (CIE76) more than 96 pixels from every light (distances grow with a photo over 1,024 px); then
the means. Goals of the starter model: lamps at least 90% as bright, colour change below 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from utils.core.cli import run_cli
from utils.core.errors import fail, reported_write
from utils.data.images import list_images, read_rgb
from utils.infer.inputs import submission_name
from utils.infer.photo_check import PhotoScores, lamp_window, photo_scores
from utils.metrics import mean_defined
from utils.photo.files import RESTORED, restored_path
from utils.plots import comparison_sheet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", required=True, help="folder of the photos as they were restored")
    p.add_argument("--restored", required=True, help="the folder restore.py or test.py wrote the restorations into")
    p.add_argument("--sheet", default=None, help="also draw four photos, before and after, whole and at a lamp")
    return p.parse_args(argv)


def restored_of(photo: Path, restored: Path) -> Path:
    """The restoration of ``photo`` in ``restored``, by restore.py's name or test.py's; one sentence if missing."""
    names = [restored_path(photo, restored), restored / submission_name(photo.name)]
    found = next((p for p in names if p.is_file()), None)
    if found is None:
        fail(f"{restored} holds neither {names[0].name} nor {names[1].name} for {photo}; restore the photos first.")
    return found


def check_folder(photos: Path, restored: Path, drawn: list | None = None) -> dict[str, PhotoScores]:
    """Each photo's scores, by name; the first four photos and restorations go to ``drawn`` where given."""
    if not photos.is_dir() or not restored.is_dir():
        fail(f"{photos if not photos.is_dir() else restored} is not a folder; pass --photos and --restored folders.")
    names = [p for p in list_images(photos) if not p.stem.endswith(RESTORED)]
    if not names:
        fail(f"{photos} holds no image; pass the folder of photos that test.py restored.")
    scores = {}
    for photo in names:
        restored_path = restored_of(photo, restored)
        rgb, out = read_rgb(photo), read_rgb(restored_path)
        if rgb.shape != out.shape:
            fail(f"{restored_path} is {out.shape[1]}x{out.shape[0]}, not the size of {photo}; restore it again.")
        scores[photo.name] = photo_scores(rgb, out)
        if drawn is not None and len(drawn) < 4:
            drawn.append((photo.name, rgb, out))
    return scores


def draw(drawn: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> None:
    """One row per photo: the photo and its restoration (shown 1,024 pixels wide), then both at full
    resolution around its brightest lamp, where glare and what the model did to it are seen best."""
    rows = []
    for name, rgb, out in drawn:
        scale = min(1.0, 1024 / max(rgb.shape[:2]))
        small = [cv2.resize(x, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for x in (rgb, out)]
        window = lamp_window(rgb, size=max(160, min(rgb.shape[:2]) // 6))
        rows.append((name, [("photo", small[0]), ("restored", small[1]), ("photo at a lamp", rgb[window]),
                            ("restored at a lamp", out[window])]))  # fmt: skip
    with reported_write(path):
        comparison_sheet(rows, path, width=3.5)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    drawn: list = [] if args.sheet else None
    scores = check_folder(Path(args.photos), Path(args.restored), drawn)
    print(f"{'photo':<32} {'glare removed':>14} {'lamps kept':>11} {'colour change far':>18}")
    rows = [*scores.items(), ("mean", PhotoScores(*(mean_defined([getattr(s, k) for s in scores.values()])
                                                      for k in ("glare_removed", "cores_kept", "colour_change"))))]  # fmt: skip
    for name, s in rows:
        print(f"{name:<32} {s.glare_removed:>13.1%} {s.cores_kept:>10.1%} {s.colour_change:>18.2f}")
    if args.sheet:
        draw(drawn, Path(args.sheet))
        print(f"wrote {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""restore.py on a 12-megapixel phone photo: time and peak memory with its defaults, against the floor.

    python -m bench.bench_photo [--weights FILE] [--megapixels 12]

Measured in one run, each in a fresh process (its peak resident memory is its own):
1. restore.py with its defaults (starter model, --work_size 1024, window-blended tiles) on one JPEG;
2. the floor: reading that JPEG upright and writing it back with its EXIF, without restoring it;
The ratio of 1 to 2 is what the restoration costs over handling the file at all.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import ROOT, add_counts, check_counts
from utils.core.cli import run_cli

COUNTS = {"megapixels": (12, 1, 50, "size of the photo, 4:3")}
FLOOR = """
import sys; sys.path.insert(0, {root!r})
from pathlib import Path
from utils.photo.files import encode_photo, read_photo
photo = read_photo(Path({src!r}), "photo", 100)
Path({dst!r}).write_bytes(encode_photo(photo.rgb, photo, 95))
"""


def night_photo(path: Path, megapixels: int) -> None:
    """A dark 4:3 street-like picture with lamps and their glow, noise and camera EXIF, as a phone saves it."""
    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    height = width * 3 // 4
    small = np.random.default_rng(0).integers(5, 50, (height // 8, width // 8, 3)).astype(np.float32)
    yy, xx = np.mgrid[: height // 8, : width // 8]
    for cy, cx in ((0.3, 0.2), (0.35, 0.6), (0.25, 0.85)):
        d2 = (yy - cy * height / 8) ** 2 + (xx - cx * width / 8) ** 2
        small += 230 * np.exp(-d2 / (2 * (width / 80) ** 2))[..., None] * np.array([1.0, 0.8, 0.5])
    image = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0132] = "PhoneCo", "Model X", "2026:01:02 03:04:05"
    image.save(path, quality=92, exif=exif.tobytes())


def measured(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GiB) of ``cmd`` run in a fresh process."""
    start = time.perf_counter()
    wrapper = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); " \
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=True, capture_output=True, text=True, cwd=ROOT)
    return time.perf_counter() - start, int(out.stdout.split()[-1]) / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_counts(p, COUNTS)
    p.add_argument("--weights", default=None, help="checkpoint (default: the shipped starter model)")
    args = p.parse_args(argv)
    check_counts(args, COUNTS)
    weights = ["--weights", args.weights] if args.weights else []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.jpg"
        night_photo(src, args.megapixels)
        restore = [sys.executable, "restore.py", str(src), "--no_progress", *weights]
        floor = FLOOR.format(root=str(ROOT), src=str(src), dst=f"{tmp}/b.jpg")
        rows = {
            "restore.py defaults": measured([*restore, "--output", f"{tmp}/a"]),
            "floor: read + write only": measured([sys.executable, "-c", floor]),
        }
        with Image.open(Path(tmp) / "a" / "photo_restored.jpg") as restored:
            kept = restored.getexif().get(0x0110) == "Model X"
    print(f"a {args.megapixels}-megapixel JPEG on {torch_threads()} CPU threads; camera EXIF kept: {kept}")
    base = rows["floor: read + write only"][0]
    for name, (seconds, gib) in rows.items():
        print(f"{name:26s} {seconds:6.1f} s  ({seconds / base:4.1f}x the floor)  peak {gib:4.2f} GiB")
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(run_cli(main))

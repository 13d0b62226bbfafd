"""Train the starter model that ``pretrained/`` ships, with the project's own commands, in one go.

    python -m scripts.starter                   # the CPU profile: two cores, under two hours
    python -m scripts.starter --profile gpu     # one H100/H200: larger data and model, bf16

Generates synthetic flare pairs (``scripts.flare_data``; its held-out test photographs are
never trained on), cuts the 256 recipe's patches (brightness-selected crops plus larger crops
resized down), trains with ``main.py`` (adaptive augmentation; the linear output), packs the
best checkpoint into ``--output`` with half-precision tensors, and scores it on the held-out
pairs (``test.py --eval_dir``, ``scripts.flare_eval``), with and without ``--keep_lights``.
Everything but the packed checkpoint goes to ``--root``; the commands are printed as they run.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from scripts.commands import run
from scripts.demo import Sheet, comparison
from utils.core.checkpoint import pack_checkpoint, read_checkpoint
from utils.core.cli import run_cli
from utils.core.errors import UserError
from utils.core.owned import Output, check_output, owned_output
from utils.infer.keep_lights import light_cores

STARTER = Path("pretrained") / "hinet_flare_starter.pth"


@dataclass(frozen=True)
class Profile:
    """Data, model and schedule of one hardware profile; everything else is the 256 recipe."""

    train_count: int
    test_count: int
    height: int
    width: int
    psf_count: int
    folds: int  # one fold validates during training: a few images, so validation stays cheap
    wf: int
    depth: int
    batch_size: int
    steps_per_epoch: int
    epochs: int
    initial_lr: float
    workers: int
    amp: bool
    clean_share: float = 0.0  # flare-free training pairs (scripts.flare_data --clean_share); the shipped model had none


PROFILES = {
    # 2 CPU cores: about 4 training samples a second at this size
    "cpu": Profile(160, 16, 768, 1024, 64, 20, wf=12, depth=4, batch_size=8, steps_per_epoch=50, epochs=12,
                   initial_lr=1e-3, workers=2, amp=False),
    # one H100/H200 with 16 cores: a wider, deeper model on ten times the pairs, in bf16
    "gpu": Profile(1600, 32, 1224, 1632, 256, 80, wf=32, depth=5, batch_size=32, steps_per_epoch=150, epochs=20,
                   initial_lr=5e-4, workers=16, amp=True, clean_share=0.25),
}  # fmt: skip


def commands(p: Profile, root: Path, device: str) -> list[list[str]]:
    """The data, patch and training commands of a profile, as a user would type them."""
    py, train = sys.executable, root / "train_original"
    return [
        [py, "-m", "scripts.flare_data", "--root", str(root), "--train_count", str(p.train_count),
         "--test_count", str(p.test_count), "--height", str(p.height), "--width", str(p.width),
         "--psf_count", str(p.psf_count), "--workers", str(p.workers), "--clean_share", f"{p.clean_share:g}",
         "--masks", "--overwrite", "--no_progress"],
        [py, "make_patch.py", "--img_size", "256", "--stride", "128", "--resize", "256", "--folds", str(p.folds),
         "--process_num", str(p.workers), "--input_path", str(train / "train_input_img"),
         "--target_path", str(train / "train_label_img"), "--csv_path", str(train), "--save_path", str(root),
         "--overwrite", "--no_progress"],
        [py, "main.py", "--img_size", "256", "--data_path", str(root), "--model_path", str(root / "runs"),
         "--exp_num", "1", "--wf", str(p.wf), "--depth", str(p.depth), "--output", "linear",
         "--batch_size", str(p.batch_size), "--steps_per_epoch", str(p.steps_per_epoch), "--epochs", str(p.epochs),
         "--initial_lr", f"{p.initial_lr:g}", "--min_lr", "1e-6", "--restart_epoch", "0", "--patience", "1000",
         "--pretrained_path", "none", "--num_workers", str(min(p.workers, 8)), "--tag", "starter",
         "--device", device, *(["--amp"] if p.amp else []), "--overwrite", "--no_progress"],
    ]  # fmt: skip


def evaluate(weights: Path, root: Path, device: str) -> None:
    """Held-out scores of the packed checkpoint, without and with --keep_lights."""
    py = sys.executable
    for name, extra in (("restored", []), ("restored_keep_lights", ["--keep_lights"])):
        out = root / "eval" / name
        run([py, "test.py", "--weights", str(weights), "--input_dir", str(root / "test_input_img"),
             "--eval_dir", str(root / "test_label_img"), "--output_dir", str(out), "--blend", "window",
             "--device", device, "--no_zip", "--overwrite", "--no_progress", *extra])  # fmt: skip
        run([py, "-m", "scripts.flare_eval", "--data", str(root), "--submission", str(out), "--weights", str(weights),
             "--out", str(root / "eval" / f"{name}_clean"), "--clean_goal", "38", *extra])  # fmt: skip


def lamp_window(rgb: np.ndarray, size: int = 160) -> tuple[slice, slice]:
    """A ``size`` square around the input's largest clipped light (the centre without one)."""
    h, w = rgb.shape[:2]
    count, _, stats, centroids = cv2.connectedComponentsWithStats(light_cores(rgb).astype(np.uint8))
    cy, cx = (h / 2, w / 2) if count < 2 else centroids[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))][::-1]
    top = int(np.clip(cy - size / 2, 0, max(h - size, 0)))
    left = int(np.clip(cx - size / 2, 0, max(w - size, 0)))
    return slice(top, top + size), slice(left, left + size)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="cpu", help="hardware profile (default cpu)")
    p.add_argument("--root", default="data/starter", help="data, patches, runs and scores (default data/starter)")
    p.add_argument("--output", default=str(STARTER), help=f"the packed checkpoint (default {STARTER})")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return p.parse_args(argv)


def packed_model(output: Path, overwrite: bool) -> Output:
    """``--output``: checked before the first command of a pipeline of hours, written only at its end, and
    replaced only with ``--overwrite`` and only if this command packed it (its model card says so)."""
    return Output(output, "a model this command packed", "--output", "scripts.starter", overwrite, ours=_has_card)


def _has_card(path: Path) -> bool:
    try:
        return "card" in read_checkpoint(path)
    except UserError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile, root, output = PROFILES[args.profile], Path(args.root), Path(args.output)
    check_output(packed_model(output, args.overwrite))
    start = time.time()
    for cmd in commands(profile, root, args.device):
        run(cmd)
    minutes = (time.time() - start) / 60
    card = {"profile": args.profile, **asdict(profile), "minutes": round(minutes, 1)}
    with owned_output(packed_model(output, args.overwrite)) as packed:
        pack_checkpoint(root / "runs" / "001" / "256_best.pth", packed, card)
    print(f"\n{output}: {output.stat().st_size / 2**20:.1f} MiB, data and training in {minutes:.1f} min")
    evaluate(output, root, args.device)
    sheet = Sheet(model="starter", target="target", lamp_crop=lamp_window, width=3.0)
    comparison(root, root / "eval" / "restored", Path("sample") / "starter_comparison.png", sheet)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

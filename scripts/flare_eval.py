"""Five goals of flare removal, checked on a test set of ``scripts.flare_data`` with trained checkpoints.

    python -m scripts.flare_eval          (after make demo: data/, weights/, results/submission/)

(a) Gain: the mean PSNR and SSIM of the restored test images against the input's, read from the
    ``metrics.csv`` that ``test.py --eval_dir`` wrote in ``--submission``.
(b) No harm to clean images: ``test.py`` restores the clean targets themselves (into ``--out``/clean,
    with the submission's blend and ensemble weights); each output's PSNR against its own input.
    Goal: at least ``--clean_goal`` dB (35 for the demo, 38 for the starter model).
(c) No harm far from the lights: over the pixels more than ``--margin`` pixels from every light of
    a pair, the PSNR of the input and of the restored image against the target. Goal: the restored
    image no worse than the input. The lights are drawn again from the generator's ``--seed``
    (a pair's random stream gives the same scene and lights); the target drawn with them must equal
    the stored one, byte for byte, or the check stops. Ghosts lie far from the lights on purpose,
    so part of the flare falls in this region.
    Data made with other generator options (``--night``, ``--phone_flare``) cannot be drawn again;
    (c) is then skipped with a sentence; (e) needs no lights, and ``scripts.photo_check`` measures
    the colour change far from the lights without a target.
(d) Lamps kept: the mean brightness of the lamps (the target's clipped light cores) in the restored
    images, as a share of the target's (``utils.infer.keep_lights``). Goal: at least 90%. The share
    kept on the input's clipped cores, the only ones a photo shows, is printed beside it with the
    target's own share there: flare clips the glow around a lamp too, and removing that glow is right.
(e) Untouched pixels left alone: over the pixels more than ``--margin`` pixels from everything the flare
    changed by over 8 levels (input against target), which need no restoration, the PSNR of the input and
    of the restored images against the targets, pooled over the test set. Goal: the restored images no
    worse. It needs no lights drawn again, so it works on any labelled data.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from scripts.commands import run
from scripts.demo import mean_row
from utils.core.cli import run_cli
from utils.core.errors import UserError, fail
from utils.data.images import list_images, read_rgb
from utils.flare.composite import encode
from utils.flare.pairs import SceneSettings, pair_scene
from utils.flare.scenes import PHOTOS, load_photo
from utils.infer.inputs import submission_name
from utils.infer.keep_lights import core_brightness_ratio, distance_to
from utils.infer.options import InferenceOptions
from utils.metrics import psnr_masked, psnr_uint8

LAMP_GOAL = 0.9
PHOTO_NUMBERS = ("lamp_edge", "floor_radius", "min_change", "light_reach")  # test.py photo options with a value


class NotRedrawn(UserError):
    """A test pair's lights cannot be drawn again: another --seed, or data made with other generator options."""


def restore_clean(labels: Path, out: Path, submission: Path, weights: list[str], extra: list[str]) -> list[float]:
    """(b): test.py on the clean targets, with the submission's blend and weights; each output's PSNR to its input."""
    flags = ["--blend", "window", *extra]
    fit = submission / "ensemble.json"
    if fit.is_file():  # a model the fit gave no weight is left out (test.py takes positive weights only)
        fitted = json.loads(fit.read_text())["weights"]
        weights = [p for p, w in zip(weights, fitted, strict=True) if w > 0]
        flags += ["--ensemble_weights", *(f"{w:g}" for w in fitted if w > 0)]
    run([sys.executable, "test.py", "--weights", *weights, "--input_dir", str(labels), "--output_dir", str(out),
         *flags, "--no_zip", "--overwrite", "--no_progress"], quiet=True)  # fmt: skip
    return [psnr_uint8(read_rgb(out / submission_name(p.name)), read_rgb(p)) for p in list_images(labels)]


def far_from_lights(label: Path, seed: int, margin: float) -> np.ndarray:
    """(H, W) bool: the pixels more than ``margin`` pixels from every light of the test pair whose target is ``label``."""
    index = int(re.fullmatch(r"test_label_(\d+)", label.stem).group(1)) - 20000
    target = read_rgb(label)
    photos = {name: load_photo(name) for name, (split, _) in PHOTOS.items() if split == "test"}
    scene = pair_scene(SceneSettings(seed, *target.shape[:2], photos=photos), "test", index)
    if not np.array_equal(encode(scene.linear + scene.lights.emission, scene.gamma), target):
        raise NotRedrawn(
            f"{label} is not the target the generator draws with --seed {seed} and its default options: the data "
            "was made with another --seed (pass it) or with --night or --phone_flare"
        )
    return beyond(scene.lights.emission.max(axis=2) > 0, margin)


def beyond(near: np.ndarray, margin: float) -> np.ndarray:
    """(H, W) bool: the pixels more than ``margin`` pixels from every pixel of ``near`` (all of them without any)."""
    return distance_to(near) > margin


def test_images(data: Path, submission: Path) -> list[tuple[Path, Path, Path]]:
    """The input, target and restored image of each test image of ``data``."""
    return [(inp, data / "test_label_img" / inp.name.replace("input", "label"), submission / submission_name(inp.name))
            for inp in list_images(data / "test_input_img")]  # fmt: skip


FLARE_LEVEL = 8  # 8-bit levels by which the flare must change a pixel for (e) to count it as flare


def untouched_psnr(data: Path, submission: Path, margin: float) -> tuple[float, float]:
    """(e): the PSNR of the inputs and of the restored images against the targets, pooled over the pixels
    more than ``margin`` pixels from everything the flare changed by over ``FLARE_LEVEL`` levels (NaN: none)."""
    errors, count = np.zeros(2), 0
    for paths in test_images(data, submission):
        image, target, restored = (read_rgb(path).astype(float) for path in paths)
        far = beyond(np.abs(image - target).max(axis=2) > FLARE_LEVEL, margin)
        errors += [((image - target)[far] ** 2).sum(), ((restored - target)[far] ** 2).sum()]
        count += int(far.sum()) * 3
    if not count:
        return float("nan"), float("nan")
    before, after = (10 * np.log10(255.0**2 / max(e / count, 1e-10)) for e in errors)
    return float(before), float(after)


def far_scores(data: Path, submission: Path, seed: int, margin: float) -> list[tuple[str, float, float, float]]:
    """(c): per test image, (name, share of far pixels, input PSNR there, restored PSNR there)."""
    rows = []
    for inp, label, output in test_images(data, submission):
        far = far_from_lights(label, seed, margin)
        target, restored = read_rgb(label), read_rgb(output)
        rows.append((inp.name, float(far.mean()), psnr_masked(read_rgb(inp), target, far),
                     psnr_masked(restored, target, far)))  # fmt: skip
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="the data root of scripts.flare_data")
    p.add_argument("--submission", default="results/submission", help="test.py --eval_dir's output on the test set")
    p.add_argument("--weights", nargs="+", default=["weights/256_best.pth", "weights/352_best.pth"])
    p.add_argument("--out", default="results/flare_eval", help="where test.py restores the clean targets (b)")
    p.add_argument("--seed", type=int, default=0, help="the seed the data was generated with")
    p.add_argument(
        "--margin", type=float, default=96.0, help="pixels from the nearest light for (c), from the flare for (e)"
    )
    p.add_argument("--clean_goal", type=float, default=35.0, help="least PSNR of a clean image's output for (b)")
    p.add_argument("--keep_lights", action="store_true", help="the submission was made with test.py --keep_lights")
    p.add_argument("--darken_only", action="store_true", help="the submission was made with test.py --darken_only")
    for name in PHOTO_NUMBERS:
        p.add_argument(f"--{name}", type=float, default=getattr(InferenceOptions, name),
                       help=f"the submission was made with test.py --{name}")  # fmt: skip
    return p.parse_args(argv)


def photo_flags(args: argparse.Namespace) -> list[str]:
    """test.py's photo options the submission was made with, for (b)'s restoration of the clean targets."""
    flags = [f"--{name}" for name in ("keep_lights", "darken_only") if getattr(args, name)]
    numbers = [(name, getattr(args, name)) for name in PHOTO_NUMBERS]
    changed = [(name, value) for name, value in numbers if value != getattr(InferenceOptions, name)]
    return flags + [item for name, value in changed for item in (f"--{name}", repr(value))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, submission = Path(args.data), Path(args.submission)
    if not (submission / "metrics.csv").is_file():
        fail(f"{submission / 'metrics.csv'} does not exist; run test.py --eval_dir {data / 'test_label_img'} first.")
    m = mean_row(submission)
    print(f"(a) gain: PSNR {m['psnr_input']:.2f} -> {m['psnr_ensemble']:.2f} dB ({m['psnr_ensemble'] - m['psnr_input']:+.2f}); "
          f"SSIM {m['ssim_input']:.4f} -> {m['ssim_ensemble']:.4f}")  # fmt: skip
    if "gpsnr_input" in m:
        print(f"    glare region {m['gpsnr_input']:.2f} -> {m['gpsnr_ensemble']:.2f} dB; "
              f"streak region {m['spsnr_input']:.2f} -> {m['spsnr_ensemble']:.2f} dB")  # fmt: skip
    clean = restore_clean(
        data / "test_label_img", Path(args.out) / "clean", submission, args.weights, photo_flags(args)
    )
    goal = args.clean_goal
    print(f"(b) clean targets as input: output against input PSNR mean {np.mean(clean):.2f} dB, min {min(clean):.2f} "
          f"(goal >= {goal:g}: {'met' if min(clean) >= goal else 'NOT met'})")  # fmt: skip
    report_far(data, submission, args.seed, args.margin)
    lamps, restored_cores, target_cores = lamp_ratios(data, submission)
    print(f"(d) lamps kept: the target's light cores keep {lamps:.1%} of their brightness (goal >= {LAMP_GOAL:.0%}: "
          f"{'met' if lamps >= LAMP_GOAL else 'NOT met'}); the input's clipped cores, glow clipped by the flare "
          f"included, keep {restored_cores:.1%} (the target itself: {target_cores:.1%})")  # fmt: skip
    report_untouched(data, submission, args.margin)
    return 0


def report_untouched(data: Path, submission: Path, margin: float) -> None:
    """(e), in one line; said so when no pixel lies that far from the flare."""
    before, after = untouched_psnr(data, submission, margin)
    if np.isnan(before):
        print(f"(e) skipped: no pixel lies more than {margin:g} px from the flare; pass a smaller --margin.")
        return
    print(f"(e) beyond {margin:g} px of everything the flare changed: input {before:.2f} dB, restored {after:.2f} dB "
          f"(goal: no worse: {'met' if after >= before else 'NOT met'})")  # fmt: skip


def report_far(data: Path, submission: Path, seed: int, margin: float) -> None:
    """(c), printed per image and in all; skipped with the reason when the lights cannot be drawn again."""
    try:
        rows = far_scores(data, submission, seed, margin)
    except NotRedrawn as err:
        print(f"(c) skipped: {err}; scripts.photo_check measures the colour change far from the lights without "
              "targets.")  # fmt: skip
        return
    for name, share, before, after in rows:
        print(
            f"    {name}: {share:.0%} of the pixels beyond {margin:g} px; input {before:.2f}, restored {after:.2f} dB"
        )
    met = all(after >= before for _, _, before, after in rows)
    print(f"(c) beyond {margin:g} px of every light: input {np.nanmean([r[2] for r in rows]):.2f} dB, restored "
          f"{np.nanmean([r[3] for r in rows]):.2f} dB (goal: restored no worse on every image: {'met' if met else 'NOT met'})")  # fmt: skip


def lamp_ratios(data: Path, submission: Path) -> tuple[float, float, float]:
    """(d), each averaged over the test images that have cores: the brightness the restored images keep on the
    target's cores; the share they keep on the input's cores; the target's own share there."""
    rows = []
    for paths in test_images(data, submission):
        image, target, restored = (read_rgb(path) for path in paths)
        rows.append([core_brightness_ratio(target, restored), core_brightness_ratio(image, restored),
                     core_brightness_ratio(image, target)])  # fmt: skip
    columns = np.array(rows, dtype=float).reshape(-1, 3).T
    means = [float(np.nanmean(col)) if not np.isnan(col).all() else float("nan") for col in columns]
    return means[0], means[1], means[2]


if __name__ == "__main__":
    sys.exit(run_cli(main))

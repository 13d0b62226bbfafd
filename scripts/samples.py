"""Regenerate the pictures in ``sample/`` from the demo data.

    python -m scripts.samples          (needs the demo data: python -m scripts.flare_data)

* the augmentations, with the original's file names (``Original.png``, ``HorizontalFlip.png``, ...);
* ``HSV_Threshold.png``: which 256 patches of one image the brightness rule keeps at 1000/3000/5000;
* ``Tiling.png``: stride-aware against all tile starts on one image, padding shaded;
* ``problem.png``: a degraded input beside its clean target;
* ``seams.png`` (after ``make demo``): the same crop of a restored demo image with the
  original's mean blend and with the window blend, high-passed and amplified so that a
  tile grid shows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import albumentations as A
import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from utils.core.cli import run_cli  # noqa: E402
from utils.core.errors import fail  # noqa: E402
from utils.core.tiling import tile_starts  # noqa: E402
from utils.data.augment import transforms as augment_transforms  # noqa: E402
from utils.data.images import read_rgb  # noqa: E402
from utils.data.patches import bright_counts  # noqa: E402


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def augmentations(image: np.ndarray, target: np.ndarray, out: Path) -> None:
    """One picture per transform: input and target after it, as the trainer applies it (p=1 here)."""
    transforms = {"Original": None, **augment_transforms(p=1)}
    for name, transform in transforms.items():
        img, tar = image, target
        if transform is not None:
            pipeline = A.Compose([transform], seed=7)
            res = pipeline(image=image, mask=target)
            img, tar = res["image"], res["mask"]
        fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
        for ax, pic, title in zip(axes, (img, tar), (f"{name}: input", "target")):
            ax.imshow(np.clip(pic, 0, 1))
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        _save(fig, out / f"{name}.png")


def larger_patch(image: np.ndarray, out: Path) -> None:
    crop = image[:512, :512]
    small = cv2.resize(crop, (256, 256), interpolation=cv2.INTER_CUBIC)
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2), gridspec_kw={"width_ratios": [2, 1]})
    axes[0].imshow(crop)
    axes[0].set_title("512x512 crop", fontsize=9)
    axes[1].imshow(small)
    axes[1].set_title("resized to 256 (bicubic)", fontsize=9)
    for ax in axes:
        ax.axis("off")
    _save(fig, out / "Larger_patch_512_resize256.png")


def threshold(image_bgr: np.ndarray, out: Path) -> None:
    h, w = image_bgr.shape[:2]
    tops, lefts = tile_starts(h, 256, 128, "all"), tile_starts(w, 256, 128, "all")
    counts = bright_counts(image_bgr, tops, lefts, 256)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
    for ax, thr in zip(axes, (1000, 3000, 5000)):
        ax.imshow(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        kept = 0
        for i, y in enumerate(tops):
            for j, x in enumerate(lefts):
                if counts[i, j] >= thr:
                    kept += 1
                    ax.add_patch(Rectangle((x, y), 256, 256, fill=True, alpha=0.12, color="lime"))
                    ax.add_patch(Rectangle((x, y), 256, 256, fill=False, lw=1, color="lime"))
        ax.set_title(f"threshold {thr}: {kept} of {counts.size} patches kept", fontsize=10)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.axis("off")
    _save(fig, out / "HSV_Threshold.png")


def tiling(image: np.ndarray, out: Path, tile: int = 256, stride: int = 128) -> None:
    h, w = image.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, mode in zip(axes, ("stride_aware", "all")):
        tops, lefts = tile_starts(h, tile, stride, mode), tile_starts(w, tile, stride, mode)
        ax.imshow(image)
        ax.add_patch(Rectangle((w, 0), lefts[-1] + tile - w, tops[-1] + tile, color="grey", alpha=0.35, hatch="//"))
        ax.add_patch(Rectangle((0, h), w, tops[-1] + tile - h, color="grey", alpha=0.35, hatch="//"))
        for y in tops:
            for x in lefts:
                ax.add_patch(Rectangle((x + 3, y + 3), tile - 6, tile - 6, fill=False, lw=0.8, color="orange"))
        ax.set_xlim(-10, lefts[-1] + tile + 10)
        ax.set_ylim(tops[-1] + tile + 10, -10)
        ax.set_title(
            f"{mode}: {len(tops) * len(lefts)} tiles of {tile}, stride {stride} (padding hatched)", fontsize=10
        )
        ax.axis("off")
    _save(fig, out / "Tiling.png")


def problem(inp: np.ndarray, clean: np.ndarray, out: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, pic, title in zip(axes, (inp, clean), ("degraded input (glare, haze)", "clean target")):
        ax.imshow(pic)
        ax.set_title(title)
        ax.axis("off")
    _save(fig, out / "problem.png")


def seams(mean_dir: Path, window_dir: Path, name: str, out: Path, size: int = 192) -> None:
    """The flattest crop of one restored image, both blends, detail (image minus its blur) amplified 12 times."""
    images = [read_rgb(folder / name).astype(np.float32) for folder in (mean_dir, window_dir)]
    grey = images[0].mean(axis=2)
    energy = cv2.blur(np.abs(cv2.Laplacian(grey, cv2.CV_32F)), (size, size))
    half = size // 2
    energy[:half], energy[-half:], energy[:, :half], energy[:, -half:] = np.inf, np.inf, np.inf, np.inf
    cy, cx = np.unravel_index(np.argmin(energy), energy.shape)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    for ax, img, title in zip(axes, images, ("mean blend (original)", "window blend"), strict=True):
        crop = img[cy - half : cy + half, cx - half : cx + half].mean(axis=2)
        detail = crop - cv2.GaussianBlur(crop, (0, 0), 3)
        ax.imshow(np.clip(128 + 12 * detail, 0, 255), cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{name}: detail x12 of a flat {size}x{size} crop (tile borders every 64 px)")
    _save(fig, out / "seams.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="demo data root")
    p.add_argument("--out", default="sample")
    p.add_argument("--results", default="results", help="after make demo: submission_original/ and submission/")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data, out = Path(args.data), Path(args.out)
    src = data / "train_original" / "train_input_img" / "train_input_10001.png"
    if not src.is_file():
        fail(f"{src} does not exist; generate the demo data first: python -m scripts.flare_data")
    out.mkdir(parents=True, exist_ok=True)
    inp = read_rgb(src)
    lab = read_rgb(data / "train_original" / "train_label_img" / "train_label_10001.png")
    bright = np.unravel_index(
        np.argmax(cv2.GaussianBlur(inp.max(axis=2).astype(np.float32), (0, 0), 40)), inp.shape[:2]
    )
    y = int(np.clip(bright[0] - 128, 0, inp.shape[0] - 256))
    x = int(np.clip(bright[1] - 128, 0, inp.shape[1] - 256))
    patch = lambda img: (img[y : y + 256, x : x + 256] / 255.0).astype(np.float32)  # noqa: E731
    augmentations(patch(inp), patch(lab), out)
    larger_patch(inp, out)
    threshold(cv2.cvtColor(inp, cv2.COLOR_RGB2BGR), out)
    tiling(inp, out)
    test_in = data / "test_input_img" / "test_input_20001.png"
    problem(read_rgb(test_in), read_rgb(data / "test_label_img" / "test_label_20001.png"), out)
    results = Path(args.results)
    if (results / "submission_original" / "test_20001.png").is_file() and (results / "submission").is_dir():
        seams(results / "submission_original", results / "submission", "test_20001.png", out)
    print(f"pictures written to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

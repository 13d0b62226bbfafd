"""A small paired flare data set in the contest's layout, made from public-domain photographs.

    python -m scripts.demo_data                 # data/train_original, data/test_input_img, data/test_label_img
    python -m scripts.demo_data --height 1224 --width 1632 --train_count 40

Clean scenes come from photographs that scikit-image ships under public-domain or CC0
terms (see ``PHOTOS``); training and test scenes come from different photographs, so a
score on the test set measures generalisation.

The degradation imitates light scattering in a phone camera at night:

1. *Scene.* The photo is cropped to 3:4, flipped at random and darkened to a night
   exposure (linear light, a slight blue cast). Bright light sources are painted
   into it: round lamps, window rectangles and thin sign bars, in warm and cool
   colours, far brighter than the scene. The clean target is this scene, tone-mapped,
   clipped and quantised: the lamps are there, without glare.
2. *Glare.* Only the input sees the light sources' emission convolved with a
   point-spread function: a mixture of a narrow bloom (Gaussian, a few pixels), a wide
   halo (a Cauchy-like profile, tens of pixels) and a few radial streaks (thin lines
   through the centre with exponential fall-off), as lens flare and sensor blooming
   look around street lamps.
3. *Veil and sensor.* A veiling haze proportional to the total light, a slight colour
   cast, signal-dependent sensor noise, clipping and 8-bit quantisation.

The make_patch brightness threshold then keeps the patches around the lights, as it
did on the contest data. The contest never released clean test targets; the demo
writes them to ``data/test_label_img`` so that test.py can score the demo.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.locks import output_lock
from utils.core.log import progress_bar
from utils.core.manifest import outputs_below, read_manifest, remove_output
from utils.core.outputs import check_output_folder, staged_dir
from utils.data.layout import INPUT_FOLDER, LABEL_FOLDER

# Photographs bundled with scikit-image, with the licence its documentation states.
PHOTOS = {
    "astronaut": ("train", "NASA, public domain"),
    "chelsea": ("train", "Stefan van der Walt, CC0"),
    "coffee": ("train", "Rachel Michetti, CC0"),
    "rocket": ("train", "SpaceX, public domain"),
    "hubble_deep_field": ("test", "NASA, public domain"),
    "camera": ("test", "Lav Varshney, CC0"),
}
GAMMA = 2.2
LIGHT_COLOURS = np.array(
    [[1.0, 0.75, 0.45], [1.0, 0.85, 0.6], [1.0, 0.6, 0.3], [0.75, 0.85, 1.0], [0.9, 0.95, 1.0], [1.0, 0.4, 0.35]]
)


def load_photo(name: str) -> np.ndarray:
    """An RGB float photo in [0, 1]; grey-scale photos are given a faint sodium-light tint."""
    from skimage import data

    img = getattr(data, name)().astype(np.float32) / 255.0
    if img.ndim == 2:
        img = img[..., None] * np.array([1.0, 0.92, 0.8], np.float32)
    return img[..., :3]


def scene_crop(photo: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of the photo with the output's aspect ratio, flipped at random, resized to (height, width)."""
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.7, 1.0)
    ch = int(min(ph, pw * height / width) * scale)
    cw = int(ch * width / height)
    top, left = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    crop = photo[top : top + ch, left : left + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (width, height), interpolation=cv2.INTER_AREA)


def paint_lights(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Emission map (H, W, 3) of lamps, windows and signs, and the (N, 2) light centres."""
    emission = np.zeros((height, width, 3), np.float32)
    unit = min(height, width)
    centres = []
    for _ in range(rng.integers(3, 8)):
        cy, cx = (
            rng.integers(int(0.08 * height), int(0.92 * height)),
            rng.integers(int(0.05 * width), int(0.95 * width)),
        )
        colour = LIGHT_COLOURS[rng.integers(len(LIGHT_COLOURS))] * rng.uniform(4.0, 12.0)
        mask = np.zeros((height, width), np.float32)
        kind = rng.choice(["lamp", "lamp", "window", "sign"])
        if kind == "lamp":
            cv2.circle(mask, (int(cx), int(cy)), max(2, int(unit * rng.uniform(0.006, 0.018))), 1.0, -1, cv2.LINE_AA)
        elif kind == "window":
            hh, hw = int(unit * rng.uniform(0.02, 0.05)), int(unit * rng.uniform(0.015, 0.04))
            cv2.rectangle(mask, (int(cx - hw), int(cy - hh)), (int(cx + hw), int(cy + hh)), 0.35, -1)
        else:
            hw, hh = int(unit * rng.uniform(0.04, 0.09)), max(1, int(unit * 0.006))
            cv2.rectangle(mask, (int(cx - hw), int(cy - hh)), (int(cx + hw), int(cy + hh)), 0.6, -1)
        emission += mask[..., None] * colour
        centres.append((cy, cx))
    return emission, np.array(centres)


def glare_psf(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Point-spread function (H, W), centred, summing to 1: bloom + halo + radial streaks."""
    y, x = np.mgrid[:height, :width].astype(np.float32)
    y -= height // 2
    x -= width // 2
    r = np.hypot(y, x)
    unit = min(height, width)
    bloom = np.exp(-0.5 * (r / (unit * rng.uniform(0.004, 0.008))) ** 2)
    halo_radius = unit * rng.uniform(0.03, 0.07)
    halo = 1.0 / (1.0 + (r / halo_radius) ** 2) ** 1.5
    streaks = np.zeros_like(r)
    angle0 = rng.uniform(0, np.pi)
    count = int(rng.integers(2, 5))
    for k in range(count):
        theta = angle0 + k * np.pi / count
        dist = np.abs(x * np.sin(theta) - y * np.cos(theta))
        streaks += np.exp(-dist / 0.8) * np.exp(-r / (unit * rng.uniform(0.08, 0.2)))
    psf = (
        0.35 * bloom / bloom.sum()
        + rng.uniform(0.45, 0.6) * halo / halo.sum()
        + rng.uniform(0.05, 0.12) * streaks / streaks.sum()
    )
    return psf / psf.sum()


def convolve_fft(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """Circular convolution of each channel with a centred PSF of the same size."""
    kernel = np.fft.rfft2(np.fft.ifftshift(psf))
    out = [np.fft.irfft2(np.fft.rfft2(image[..., c]) * kernel, s=psf.shape) for c in range(image.shape[2])]
    return np.clip(np.stack(out, axis=-1), 0, None).astype(np.float32)


def encode_8bit(linear: np.ndarray) -> np.ndarray:
    return np.round(np.clip(linear, 0, 1) ** (1 / GAMMA) * 255).astype(np.uint8)


def make_pair(photo: np.ndarray, height: int, width: int, rng: np.random.Generator):
    """(degraded input, clean target, light centres): 8-bit RGB images and an (N, 2) array."""
    scene = scene_crop(photo, height, width, rng) ** GAMMA
    scene = scene * rng.uniform(0.2, 0.45) * np.array([0.85, 0.9, 1.05], np.float32)  # night exposure
    emission, centres = paint_lights(height, width, rng)
    clean_linear = scene + emission
    glare = rng.uniform(0.9, 1.6) * convolve_fft(emission, glare_psf(height, width, rng))
    veil = rng.uniform(0.05, 0.15) * emission.mean(axis=(0, 1))
    cast = 1 + rng.uniform(-0.05, 0.05, size=3)
    degraded = (scene + emission + glare + veil) * cast
    noise = rng.normal(0, 1, degraded.shape) * np.sqrt(0.0002 * np.clip(degraded, 0, 1) + 2e-6)
    return encode_8bit(degraded + noise), encode_8bit(clean_linear), centres


DEMO_FOLDERS = ("train_original", "test_input_img", "test_label_img")


def check_demo_folders(root: Path, overwrite: bool) -> list[Path]:
    """The demo replaces only a demo set it made and the patch sets cut from it, never a user's data;
    returns those patch sets (removed with the demo set they came from)."""
    for folder in DEMO_FOLDERS:
        check_output_folder(root / folder, "demo folder", overwrite, "demo data")
    patch_sets, problem = outputs_below(root / "train", "patches") if (root / "train").is_dir() else ([], None)
    if problem:
        fail(f"{problem}; move it away or choose another --root (the demo replaces only what it made).")
    if patch_sets and read_manifest(root / "train_original") is None:
        fail(f"{root / 'train'} holds patches of data the demo did not make; move it away or choose another --root.")
    return patch_sets


def generate(
    root: str | Path = "data",
    train_count: int = 12,
    test_count: int = 4,
    height: int = 576,
    width: int = 768,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Write the demo set under ``root``; returns counts and the mean input PSNR.

    Each folder is built in a private staging folder and moved into place only when all are
    complete; the patch sets cut from an earlier demo set go with it.
    """
    if train_count < 2 or test_count < 1:
        fail("--train_count must be at least 2 and --test_count at least 1.")
    if height < 64 or width < 64:
        fail(f"--height and --width must be at least 64 (got {height}x{width}).")
    root = Path(root)
    patch_sets = check_demo_folders(root, overwrite)
    with ExitStack() as stack:
        for path in [*(root / f for f in DEMO_FOLDERS), *patch_sets]:
            stack.enter_context(output_lock(path, "demo folder" if path.parent == root else "patch folder"))
        stages = {f: stack.enter_context(staged_dir(root / f, "demo data", "scripts.demo_data")) for f in DEMO_FOLDERS}
        psnrs = _write_pairs(stages, train_count, test_count, height, width, seed, progress)
        for path in patch_sets:  # the earlier demo set's patches: gone before the new set moves in
            remove_output(path, "patches")
    _remove_empty_dirs(root / "train")
    return {"train": train_count, "test": test_count, "size": (height, width), "mean_psnr": float(np.mean(psnrs))}


def _remove_empty_dirs(folder: Path) -> None:
    """Remove ``folder`` and its sub-folders where they hold nothing (left behind by removed patch sets)."""
    if not folder.is_dir() or folder.is_symlink():
        return
    for sub in folder.iterdir():
        _remove_empty_dirs(sub)
    if not any(folder.iterdir()):
        folder.rmdir()


def _write_pairs(stages: dict[str, Path], train_count, test_count, height, width, seed, progress) -> list[float]:
    """Every pair into the staging folders, and train.csv; returns each pair's input PSNR."""
    original = stages["train_original"]
    for sub in (INPUT_FOLDER, LABEL_FOLDER):
        (original / sub).mkdir()
    photos = {split: [n for n, (s, _) in PHOTOS.items() if s == split] for split in ("train", "test")}
    loaded = {name: load_photo(name) for name in PHOTOS}
    jobs = [("train", i) for i in range(train_count)] + [("test", i) for i in range(test_count)]
    rows, psnrs = [], []
    for split, i in progress_bar(jobs, desc="demo pairs", unit="pair", show=progress):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
        names = photos[split]
        noisy, clean, _ = make_pair(loaded[names[i % len(names)]], height, width, rng)
        if split == "train":
            idx = 10000 + i
            inp = original / INPUT_FOLDER / f"train_input_{idx}.png"
            lbl = original / LABEL_FOLDER / f"train_label_{idx}.png"
            rows.append({"img_id": idx, "input_img": inp.name, "label_img": lbl.name})
        else:
            idx = 20000 + i
            inp = stages["test_input_img"] / f"test_input_{idx}.png"
            lbl = stages["test_label_img"] / f"test_label_{idx}.png"
        cv2.imwrite(str(inp), cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(lbl), cv2.cvtColor(clean, cv2.COLOR_RGB2BGR))
        mse = np.mean((noisy.astype(np.float64) - clean) ** 2)
        psnrs.append(10 * np.log10(255**2 / max(mse, 1e-10)))
    pd.DataFrame(rows).to_csv(original / "train.csv", index=False)
    return psnrs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Generate the demo flare data set in the contest layout.")
    p.add_argument("--root", default="data", help="data folder to fill (the contest layout)")
    p.add_argument("--train_count", type=int, default=12)
    p.add_argument("--test_count", type=int, default=4)
    p.add_argument("--height", type=int, default=576, help="image height (the contest: 1224 or 2448)")
    p.add_argument("--width", type=int, default=768, help="image width (the contest: 1632 or 3264)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing data set and its patches")
    p.add_argument("--no_progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = generate(args.root, args.train_count, args.test_count, args.height, args.width, args.seed, args.overwrite,
                    not args.no_progress)  # fmt: skip
    print(f"demo data: {info['train']} training and {info['test']} test pairs of {args.height}x{args.width} in "
          f"{args.root}; mean input PSNR {info['mean_psnr']:.2f} dB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

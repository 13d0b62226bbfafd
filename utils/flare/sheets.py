"""Sample sheets of the flare generator: a grid of PSFs and a few input/target pairs with their masks.

    python -m utils.flare.sheets                 # sample/flare_psfs.png and sample/flare_pairs.png

PSFs are shown on a logarithmic scale (6.5 decades below the brightest channel's peak, each channel
on the same scale), so the faint streaks, the halo and the colour fringes show next to the core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.core.cli import run_cli  # noqa: E402
from utils.core.locks import atomic_path  # noqa: E402
from utils.flare.bank import BankSettings, PSFBank, load_or_compute  # noqa: E402
from utils.flare.pairs import FlareJob, SceneSettings, make_pair  # noqa: E402

DECADES = 6.5


def tone_map(psf: np.ndarray, decades: float = DECADES) -> np.ndarray:
    """An RGB PSF on a log scale: 1 at the brightest channel's peak, 0 ``decades`` below, channels alike."""
    scaled = np.log10(np.maximum(psf / psf.max(), 10.0 ** (-decades - 1)))
    return np.clip((scaled + decades) / decades, 0, 1)


def psf_sheet(bank: PSFBank, path: str | Path, count: int = 16, crop: float = 0.7) -> None:
    """A grid of the bank's first ``count`` PSFs (their central ``crop``), each with its aperture in a corner."""
    cols = 4
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.35 * rows), squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if k >= count:
            continue
        size = bank.size
        lo, hi = int(size * (1 - crop) / 2), int(size * (1 + crop) / 2)
        ax.imshow(tone_map(bank.psf(k))[lo:hi, lo:hi])
        thumb = bank.aperture(k)
        inset = ax.inset_axes([0.0, 0.0, 0.22, 0.22])
        inset.imshow(thumb, cmap="gray", vmin=0, vmax=1)
        inset.set_xticks([])
        inset.set_yticks([])
        shape = "disc" if bank.sides[k] == 0 else f"{bank.sides[k]} blades"
        ax.set_title(f"PSF {k}: {shape}, defocus {bank.defocus[k]:.2f} waves", fontsize=8)
    fig.suptitle(
        f"PSF bank (log scale, {DECADES} decades; inset: the aperture with its dust and scratches)", fontsize=10
    )
    fig.tight_layout()
    _save(fig, path)


def pairs_sheet(bank: PSFBank, path: str | Path, picks: list[tuple[str, int]], height: int, width: int) -> list[float]:
    """Input, target and masks (glare red, streaks yellow) of the pairs ``picks``; returns their input PSNRs."""
    fig, axes = plt.subplots(len(picks), 3, figsize=(15, 15 * height / width * len(picks) / 3 + 0.5), squeeze=False)
    psnrs = []
    job = FlareJob(SceneSettings(0, height, width), bank, masks=True)
    for row, (split, index) in zip(axes, picks):
        pair, source = make_pair(job, split, index)
        psnrs.append(pair.psnr)
        overlay = pair.input.astype(np.float32) / 255 * 0.35
        overlay[pair.glare > 0] = overlay[pair.glare > 0] * 0.3 + np.array([0.8, 0.1, 0.1]) * 0.7
        overlay[pair.streak > 0] = np.array([1.0, 0.9, 0.2])
        name = source.name
        panels = [(f"input ({split} {index}, {source.kind}: {name}, PSNR {pair.psnr:.1f} dB)", pair.input),
                  ("target", pair.target), ("masks: glare (red), streaks (yellow)", overlay)]  # fmt: skip
        for ax, (title, img) in zip(row, panels):
            ax.imshow(img)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    _save(fig, path, dpi=80)
    return psnrs


def _save(fig, path: str | Path, dpi: int = 100) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Draw the flare generator's sample sheets.")
    p.add_argument("--out", default="sample", help="folder for flare_psfs.png and flare_pairs.png")
    p.add_argument("--cache", default="data/.flare_cache", help="where the default PSF bank is cached")
    p.add_argument("--pairs", default="train:8,train:6,train:3,test:4", help="split:index of the pairs shown")
    args = p.parse_args(argv)
    bank = load_or_compute(args.cache, BankSettings(), seed=0, workers=2)
    psf_sheet(bank, Path(args.out) / "flare_psfs.png")
    picks = [(s, int(i)) for s, i in (item.split(":") for item in args.pairs.split(","))]
    psnrs = pairs_sheet(bank, Path(args.out) / "flare_pairs.png", picks, 612, 816)
    print(f"wrote {args.out}/flare_psfs.png and {args.out}/flare_pairs.png (input PSNRs {np.round(psnrs, 1).tolist()})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Pictures: training curves and side-by-side comparison sheets."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.core.locks import atomic_path  # noqa: E402


def plot_curves(rows: list[dict], path: str | Path) -> None:
    """Loss, PSNR (train and validation) and learning rate per epoch, from metrics.csv rows."""
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [float(r["train_loss"]) for r in rows], "o-", ms=3)
    axes[0].set_title("training loss")
    axes[1].plot(epochs, [float(r["train_psnr"]) for r in rows], "o-", ms=3, label="train (patches)")
    axes[1].plot(epochs, [float(r["val_psnr"]) for r in rows], "o-", ms=3, label="validation (full images)")
    axes[1].set_title("PSNR (dB)")
    axes[1].legend()
    axes[2].plot(epochs, [float(r["lr"]) for r in rows], "o-", ms=3)
    axes[2].set_title("learning rate")
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def comparison_sheet(
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]], path: str | Path, width: float = 4.0
) -> None:
    """A grid of RGB images: one row per item, one column per (title, image)."""
    ncols = max(len(panels) for _, panels in rows)
    first = rows[0][1][0][1]
    aspect = first.shape[0] / first.shape[1]
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width * ncols, width * aspect * len(rows) + 0.4), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(panels):
                title, img = panels[c]
                ax.imshow(img)
                ax.set_title(f"{label}: {title}" if c == 0 and label else title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)

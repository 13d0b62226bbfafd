"""Tiled inference, ensembling, evaluation and the zipped submission (test.py's library)."""

from __future__ import annotations

import csv
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from utils.checkpoint import load_model
from utils.errors import fail
from utils.files import has_files, staged_dir
from utils.image_io import image_size, list_images, read_rgb
from utils.metrics import psnr_uint8, ssim_uint8
from utils.runtime import autocast
from utils.tiling import count_tiles, restore_image

# Tile, stride and batch of the original's two models; other sizes default to stride tile // 4, batch 16.
TILE_DEFAULTS = {256: (64, 16), 352: (96, 32)}


@dataclass
class ModelSpec:
    checkpoint: Path
    tile: int
    stride: int
    batch_size: int
    weight: float


class Restorer:
    """A loaded HINet that restores batches of tiles: eval mode, channels-last, optional autocast."""

    def __init__(self, model: torch.nn.Module, device: torch.device, amp: bool = False) -> None:
        self.device = device
        self.amp = amp
        self.model = model.to(device).eval().to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.amp):
            return self.model(batch)[1].float()


def submission_name(input_name: str) -> str:
    """``test_input_20000.png`` becomes ``test_20000.png``; other names are kept (as PNG)."""
    stem = Path(input_name).stem
    match = re.fullmatch(r"test_input_(.+)", stem)
    return f"test_{match.group(1)}.png" if match else f"{stem}.png"


def find_target(eval_dir: Path, input_name: str) -> Path | None:
    """The clean image of an input: the same name, or with ``input`` replaced by ``label``."""
    for name in (input_name, input_name.replace("input", "label")):
        if (eval_dir / name).is_file():
            return eval_dir / name
    return None


def from_uint8(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB array to a (3, H, W) float tensor in [0, 1] on ``device``."""
    return torch.from_numpy(rgb).to(device).permute(2, 0, 1).float().div(255)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] to an (H, W, 3) uint8 RGB array, rounded once."""
    return (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def check_input_folder(input_dir: Path) -> list[Path]:
    if not input_dir.is_dir():
        fail(f"input folder {input_dir} does not exist; put the test images there or pass --input_dir.")
    images = list_images(input_dir)
    if not images:
        fail(f"input folder {input_dir} holds no images (png, jpg, bmp or tif).")
    unreadable = [p.name for p in images if image_size(p) is None]
    if unreadable:
        fail(f"{len(unreadable)} image(s) in {input_dir} cannot be decoded: {', '.join(unreadable[:5])}.")
    return images


def run_inference(
    specs: list[ModelSpec],
    input_dir: str | Path,
    output_dir: str | Path,
    device: torch.device,
    tile_mode: str = "stride_aware",
    tta: bool = False,
    amp: bool = False,
    make_zip: bool = True,
    eval_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Restore every image of ``input_dir`` with the weighted ensemble of ``specs``; returns a summary.

    Outputs are built in a staging folder that replaces ``output_dir`` only when the whole
    run succeeded, so a failed run leaves no half-written PNG or zip and never mixes runs.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    images = check_input_folder(input_dir)
    if eval_dir is not None:
        eval_dir = Path(eval_dir)
        if not eval_dir.is_dir():
            fail(f"--eval_dir {eval_dir} does not exist.")
        missing = [p.name for p in images if find_target(eval_dir, p.name) is None]
        if missing:
            fail(f"--eval_dir {eval_dir} has no clean image for {', '.join(missing[:5])}.")
    if has_files(output_dir) and not overwrite:
        fail(
            f"output folder {output_dir} already holds results; pass --overwrite to replace them or choose --output_dir."
        )
    total_weight = sum(s.weight for s in specs)
    if total_weight <= 0 or any(s.weight < 0 for s in specs):
        fail("--ensemble_weights must be non-negative and not all zero.")

    restorers = [Restorer(load_model(s.checkpoint)[0], device, amp) for s in specs]
    rows: list[dict] = []
    start = time.perf_counter()
    with staged_dir(output_dir) as stage:
        bar = tqdm(images, unit="image", desc="restoring", disable=not progress)
        for path in bar:
            rgb = read_rgb(path)
            image = from_uint8(rgb, device)
            h, w = rgb.shape[:2]
            ensemble = torch.zeros_like(image)
            per_model = []
            for spec, restorer in zip(specs, restorers, strict=True):
                n_tiles = count_tiles(h, w, spec.tile, spec.stride, tile_mode, tta)
                with tqdm(
                    total=n_tiles,
                    unit="tile",
                    leave=False,
                    disable=not progress or n_tiles < 64,
                    desc=f"{path.name} @{spec.tile}",
                ) as tiles:
                    restored = restore_image(
                        restorer, image, spec.tile, spec.stride, spec.batch_size, tile_mode, tta, on_batch=tiles.update
                    )
                ensemble += (spec.weight / total_weight) * restored
                if eval_dir is not None:
                    per_model.append(to_uint8(restored))
            out = to_uint8(ensemble)
            if not cv2.imwrite(str(stage / submission_name(path.name)), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
                fail(f"could not write {stage / submission_name(path.name)}; is the disk full?")
            if eval_dir is not None:
                clean = read_rgb(find_target(eval_dir, path.name))
                if clean.shape != rgb.shape:
                    fail(f"clean image for {path.name} is {clean.shape[1]}x{clean.shape[0]}, the input {w}x{h}.")
                row = {"image": path.name, "psnr_input": psnr_uint8(rgb, clean), "ssim_input": ssim_uint8(rgb, clean)}
                for spec, pred in zip(specs, per_model, strict=True):
                    row[f"psnr_{spec.tile}"] = psnr_uint8(pred, clean)
                    row[f"ssim_{spec.tile}"] = ssim_uint8(pred, clean)
                row["psnr_ensemble"] = psnr_uint8(out, clean)
                row["ssim_ensemble"] = ssim_uint8(out, clean)
                rows.append(row)
                bar.set_postfix(psnr=f"{row['psnr_input']:.2f}->{row['psnr_ensemble']:.2f}")
        seconds = time.perf_counter() - start
        pngs = sorted(p.name for p in stage.glob("*.png"))
        if len(pngs) != len(images):
            fail(f"{len(images)} input images map to only {len(pngs)} distinct output names; rename the inputs.")
        if make_zip:
            with zipfile.ZipFile(stage / "submission.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                for name in pngs:
                    zf.write(stage / name, arcname=name)
        summary = {"images": len(images), "seconds": seconds, "output_dir": str(output_dir)}
        if rows:
            summary["mean"] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "image"}
            with open(stage / "metrics.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
                writer.writerow({"image": "mean", **summary["mean"]})
            summary["rows"] = rows
    return summary

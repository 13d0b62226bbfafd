"""An image's way through test.py, top to bottom: read it, let each model restore it (tiled or whole), mix the
restorations with the ensemble weights, blend the light cores back if asked, write it.

``restore`` is the ensemble's restoration of one image tensor, for every caller (test.py, the benchmarks);
``restore_images`` is the loop over the images of one process. Under torchrun each process runs that loop
on its own share of the images and the results are gathered around it (``utils.infer.submission``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from models.checkpoint import load_model
from models.local_norm import use_local_stats
from utils.core.errors import fail
from utils.core.log import progress_bar
from utils.core.runtime import configure_cuda
from utils.core.tiling import Tiling, count_tiles, restore_image
from utils.data.images import from_uint8, read_rgb, to_uint8
from utils.infer.inputs import submission_name
from utils.infer.keep_lights import keep_lights, only_near_lights, out_of_reach
from utils.infer.onnx_model import OnnxRestorer, onnx_restorers
from utils.infer.options import InferenceOptions, ModelSpec, check_specs
from utils.infer.restorer import Restorer
from utils.infer.scores import Labels, label_scores, seam_scores

FLOOR_SIZE = 1024  # long side of the copy on which lift_dark_rings finds the darkest pixels (a smooth floor)
FLOOR_PIXELS = 48  # and the largest radius, in pixels of that copy, before the copy is made smaller


@dataclass(frozen=True)
class Model:
    """One model of the ensemble: its spec (tile, stride, batch, weight, column label) and what restores a
    batch of tiles with it, on its device."""

    spec: ModelSpec
    predict: Restorer | OnnxRestorer

    @property
    def device(self) -> torch.device:
        return self.predict.device


def load_models(specs: list[ModelSpec], device: torch.device, opts: InferenceOptions) -> list[Model]:
    """One model per checkpoint (or .onnx file with ``--backend onnxruntime``), loaded and checked against
    its spec before any image is read."""
    if opts.backend == "onnxruntime":
        return [Model(s, r) for s, r in zip(specs, onnx_restorers(specs, device, opts), strict=True)]
    for spec in specs:
        if spec.checkpoint.suffix.lower() == ".onnx":
            fail(f"{spec.checkpoint} is an ONNX file; pass --backend onnxruntime to restore with it.")
    loaded = [load_model(s.checkpoint) for s in specs]
    check_specs(specs)
    if opts.local_stats:  # the window is in image pixels: a multiple of the size each model was trained on
        for spec, (model, _, _) in zip(specs, loaded, strict=True):
            use_local_stats(model, round(opts.local_stats * spec.tile))
    configure_cuda(device)
    return [
        Model(spec, Restorer(model, device, opts.amp, compile=opts.compile))
        for spec, (model, _, _) in zip(specs, loaded, strict=True)
    ]


def restore_model(
    image: torch.Tensor,
    model: Model,
    opts: InferenceOptions,
    on_batch: Callable[[int], None] | None = None,
    name: str = "",
) -> torch.Tensor:
    """One model's restoration of a (3, H, W) image in [0, 1] as the options say (tile placement, blend, TTA);
    NaN or infinite output is refused, since it would be written as black or white pixels."""
    spec = model.spec
    tiling = Tiling(spec.tile, spec.stride, spec.batch_size, opts.tile_mode, opts.blend)
    out = restore_image(model.predict, image, tiling, opts.tta, on_batch)
    if not bool(torch.isfinite(out).all()):
        where = f"image {name}" if name else "a held-out --fit_weights image"
        fail(
            f"{spec.checkpoint} restored {where} to NaN or infinite values (its weights overflow"
            f"{' in mixed precision; try without --amp' if opts.amp else ''}); nothing was written, so use "
            f"another checkpoint."
        )
    return out


def restore(
    image: torch.Tensor,
    models: list[Model],
    opts: InferenceOptions,
    name: str = "",
    per_model: list[np.ndarray] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> torch.Tensor:
    """The ensemble's restoration of a (3, H, W) image in [0, 1]: each model's restoration times its weight
    over the weights' sum, added in order to zeros. One full-size restoration is held at a time; each model's
    8-bit copy goes to ``per_model`` where given (for its scores). Large images show a tile bar per model, and
    ``on_progress`` hears the share of all tiles done. With ``opts.work_size``, each model restores a smaller
    copy and its correction is applied at full size."""
    total, mixed = sum(m.spec.weight for m in models), None
    small = working_copy(image, opts.work_size)
    height, width = small.shape[-2:]
    counts = [count_tiles(height, width, m.spec.tile, m.spec.stride, opts.tile_mode, opts.tta) for m in models]
    done = 0
    for model, tiles in zip(models, counts, strict=True):
        spec, show = model.spec, opts.progress and tiles >= 64
        with progress_bar(total=tiles, unit="tile", leave=False, show=show, desc=f"{name} @{spec.tile}") as bar:

            def step(n: int) -> None:
                nonlocal done
                bar.update(n)
                done += n
                if on_progress is not None:
                    on_progress(done / sum(counts))

            restored = restore_model(small, model, opts, step, name)
        if small is not image:
            restored = corrected(image, small, restored)
        if per_model is not None:
            per_model.append(to_uint8(restored))
        mixed = torch.zeros_like(restored) if mixed is None else mixed
        mixed += (spec.weight / total) * restored
    return mixed


def working_copy(image: torch.Tensor, work_size: int) -> torch.Tensor:
    """``image`` scaled down (by area) so that its long side is ``work_size``; ``image`` itself when it is no
    larger or ``work_size`` is 0. A model sees glare at the scale it was trained on, in a fraction of the time."""
    height, width = image.shape[-2:]
    if not work_size or max(height, width) <= work_size:
        return image
    scale = work_size / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image[None], size=size, mode="area")[0]


def corrected(image: torch.Tensor, small: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """The full-size ``image`` plus the upsampled change the model made to its working copy: what the model
    removed (glare, which is smooth) is removed at full size, and the photo's own detail is kept."""
    change = F.interpolate((restored - small)[None], size=image.shape[-2:], mode="bilinear", align_corners=False)
    return (image + change[0]).clamp(0, 1)


def drop_small_changes(image: torch.Tensor, restored: torch.Tensor, levels: float) -> torch.Tensor:
    """``restored`` with its change from ``image`` soft-thresholded per pixel: gone where the change's largest
    channel is under ``levels`` 8-bit levels, that much smaller elsewhere (the other channels in proportion).

    Far from the lights a model shifts colours by a level or two everywhere; glare is removed by tens of levels,
    a streak one pixel wide too. (Judging the change smoothed dropped more of the shifts but undid most of a
    thin streak's removal.)"""
    change = restored - image
    size = change.abs().amax(dim=0, keepdim=True)
    return image + change * (1 - (levels / 255) / size.clamp(min=1e-6)).clamp(min=0)


def lift_dark_rings(image: torch.Tensor, restored: torch.Tensor, radius: float) -> torch.Tensor:
    """``restored`` lifted to about the darkest pixel of ``image`` within ``radius`` times its long side: flare
    adds light to a lamp's surroundings, so they are seldom darker without it than the darkest of them in the
    photo, and a model that takes away more than the glow digs a dark, often bluish ring there.

    The darkest pixels are found on a copy at most ``FLOOR_SIZE`` long, and smaller where the radius would be more
    than ``FLOOR_PIXELS`` on it (an erosion's time grows with the square of its radius); the floor is smoothed by
    a Gaussian of half the radius, so it can dip a little below that darkest pixel, and never exceeds ``image``."""
    longest = max(image.shape[-2:])
    small = working_copy(image, min(FLOOR_SIZE, max(1, round(FLOOR_PIXELS / radius))))
    pixels = max(1, round(radius * max(small.shape[-2:])))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    darkest = cv2.erode(small.permute(1, 2, 0).cpu().numpy(), disk)
    darkest = cv2.GaussianBlur(darkest, (0, 0), pixels / 2).reshape(*small.shape[-2:], -1)
    floor = torch.from_numpy(darkest).permute(2, 0, 1).to(image.device)
    if max(small.shape[-2:]) < longest:
        floor = F.interpolate(floor[None], size=image.shape[-2:], mode="bilinear", align_corners=False)[0]
    return torch.maximum(restored, torch.minimum(floor, image))


def restore_rgb(
    rgb: np.ndarray,
    models: list[Model],
    opts: InferenceOptions,
    name: str = "",
    per_model: list[np.ndarray] | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """``restore`` of an (H, W, 3) uint8 RGB image, then the photo options, each if asked: no brighter than the
    image (``darken_only``), its small changes dropped (``min_change``), no darker than its surroundings
    (``floor_radius``), changed only near its lights (``light_reach``), its light cores blended back
    (``keep_lights``). The restored image as uint8 RGB, the form written or handed back."""
    if per_model is None and out_of_reach(rgb, opts.light_reach):
        return rgb.copy()  # no clipped lights: light_reach would drop every change, so the models need not run
    image = from_uint8(rgb, models[0].device)
    restored = restore(image, models, opts, name, per_model, on_progress)
    if opts.darken_only:
        restored = torch.minimum(restored, image)
    if opts.min_change:
        restored = drop_small_changes(image, restored, opts.min_change)
    if opts.floor_radius:
        restored = lift_dark_rings(image, restored, opts.floor_radius)
    if opts.light_reach:
        restored = only_near_lights(rgb, image, restored, opts.light_reach)
    if opts.keep_lights:
        restored = keep_lights(rgb, image, restored, opts.lamp_edge)
    return to_uint8(restored)


def restore_images(
    paths: Iterable[Path],
    models: list[Model],
    opts: InferenceOptions,
    folder: Path,
    labels: Labels | None,
    show: bool,
) -> list[dict]:
    """Restore each image of ``paths`` and write it into ``folder`` under its submission name; returns a
    metrics.csv row per image: each model's seam measure, and with ``labels`` the scores. ``show``: this
    process shows the image bar (or, off a terminal, a line per image)."""
    specs = [m.spec for m in models]
    rows: list[dict] = []
    bar = progress_bar(paths, unit="image", desc="restoring", show=show)
    for path in bar:
        rgb = read_rgb(path)
        per_model: list[np.ndarray] = []
        out = restore_rgb(rgb, models, opts, path.name, per_model)
        name = submission_name(path.name)
        if not cv2.imwrite(str(folder / name), cv2.cvtColor(out, cv2.COLOR_RGB2BGR)):
            fail(f"could not write {name} into the output folder; is the disk full?")
        row = {"image": path.name} | seam_scores(per_model, specs, opts.tile_mode)
        if labels is not None:
            row |= label_scores(labels, path.name, rgb, per_model, out, specs)
            bar.set_postfix(psnr=f"{row['psnr_input']:.2f}->{row['psnr_ensemble']:.2f}")
        rows.append(row)
        if show and bar.disable:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "image" and v is not None)
            print(f"{path.name}: {shown}", flush=True)
    return rows

"""What test.py runs: one spec per checkpoint (tile, stride, batch, weight) and the inference options, checked up front."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.checkpoint import MAX_IMG_SIZE, REPO, STARTER, stored_patch_size
from utils.core.errors import fail
from utils.core.settings import Allowed, Form, setting
from utils.core.tiling import BLENDS, TILE_MODES
from utils.recipe import RECIPE, default_ensemble_weights, recipe_for


@dataclass
class ModelSpec:
    checkpoint: Path
    tile: int
    stride: int
    batch_size: int
    weight: float
    label: str = ""  # names the model's metric columns: its tile size, unless two models share one

    def __post_init__(self) -> None:
        self.label = self.label or str(self.tile)


def label_models(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Give each model a unique column label: ``256`` and ``352``, or ``1_256`` and ``2_256``."""
    tiles = [s.tile for s in specs]
    if len(set(tiles)) == len(tiles):
        return specs
    return [replace(s, label=f"{i + 1}_{s.tile}") for i, s in enumerate(specs)]


def check_specs(specs: list[ModelSpec]) -> None:
    """Tiles of a size a forward pass can take (any size: the model pads itself), strides that leave no pixel
    uncovered, usable weights."""
    for spec in specs:
        if spec.tile > MAX_IMG_SIZE:
            fail(
                f"tile size {spec.tile} for {spec.checkpoint} is larger than {MAX_IMG_SIZE}, more than any image needs "
                f"and more memory than a forward pass can have; pass --tile_sizes of the patch sizes it was trained on."
            )
        if spec.stride > spec.tile:
            fail(
                f"stride {spec.stride} is larger than the tile {spec.tile} for {spec.checkpoint}, which would leave "
                f"pixels unrestored; pass --strides no larger than the tiles."
            )
    if any(not (np.isfinite(s.weight) and s.weight > 0) for s in specs):
        fail("--ensemble_weights must be finite and positive; leave a checkpoint out of --weights instead of weight 0.")
    if not np.isfinite(sum(s.weight for s in specs)):
        fail("--ensemble_weights are too large to add up; give relative weights such as 0.4 0.6.")


BACKENDS = ("torch", "onnxruntime")


@dataclass
class InferenceOptions:
    """How test.py restores: tile placement and blending, precision, outputs, evaluation, weight fitting."""

    tile_mode: str = setting(
        "stride_aware",
        "stride_aware: skip tiles that would be mostly padding (original); all: every start in the "
        "image; shift: move the last tile to the border, no padding; full: the whole image in one pass",
        Allowed(choices=TILE_MODES),
    )
    local_stats: float = setting(
        0.0,
        "HIN statistics over a window of this many training patch sizes instead of the whole input "
        "(TLC; 1.5 is the published choice, for --tile_mode full); 0 = off",
        Allowed(minimum=0),
        new=True,
    )
    blend: str = setting(
        "mean",
        "mean: overlapping tiles count equally (original); window: a Hann window per tile, no seams",
        Allowed(choices=BLENDS),
        new=True,
    )
    work_size: int = setting(
        0,
        "restore a copy whose long side is at most this many pixels and add its upsampled correction to the "
        "full-size image, so that a photo's glare has the size the model learned (photos: 1024); 0 = full size",
        Allowed(minimum=0),
        new=True,
    )
    tta: bool = setting(False, "average the eight flip/rotation variants (8x slower)")
    keep_lights: bool = setting(
        False,
        "blend the input's clipped light cores back into the output with a soft mask (lamps stay bright)",
        new=True,
    )
    lamp_edge: float = setting(
        0.1,
        "with --keep_lights: the soft edge around each light core, as a share of that core's diameter (of a disc "
        "of its area, at most 4 times its thickness; at least 4 pixels per 1,024 of the long side); wider keeps "
        "more of the glow next to the lamp and looks more natural (photos: 0.4)",
        Allowed(minimum=0, maximum=4),
        new=True,
    )
    darken_only: bool = setting(
        False,
        "never let a pixel come out brighter than the input's: flare only adds light, so what a model adds is a "
        "colour shift, dropped",
        new=True,
    )
    floor_radius: float = setting(
        0.0,
        "never let a pixel come out darker than about the darkest of the input within this share of the long side "
        "around it (a smoothed floor), so that removing glare leaves far fewer dark rings around lamps (photos: "
        "0.04); 0 = off",
        Allowed(minimum=0, maximum=1),
        new=True,
    )
    min_change: float = setting(
        0.0,
        "leave a pixel of the input as it is where the model changes it by less than this many 8-bit levels (its "
        "largest channel), and make every larger change smaller by as much, so that the picture away from the "
        "glare keeps its colours; 0 = off",
        Allowed(minimum=0, maximum=255),
        new=True,
    )
    light_reach: float = setting(
        0.0,
        "keep the model's changes only near the input's clipped lights: in full up to half this share of the "
        "long side from a light, fading to none at this share, so that the picture away from the lights is the "
        "input (photos: 0.12); 0 = everywhere",
        Allowed(minimum=0, maximum=2),
        new=True,
    )
    amp: bool = setting(False, "mixed precision (bf16 where supported, else fp16)", new=True)
    compile: bool = setting(False, "torch.compile the models: slower first image, faster after (GPU runs)", new=True)
    backend: str = setting(
        "torch",
        "torch: the checkpoints in PyTorch; onnxruntime: .onnx files of scripts.export_onnx",
        Allowed(choices=BACKENDS),
        new=True,
    )
    make_zip: bool = setting(True, "do not write submission.zip", new=True, form=Form(flag="no_zip"))
    eval_dir: str | None = setting(
        None,
        "folder of clean targets: PSNR and SSIM per image for the input, each model and the ensemble, in metrics.csv",
        new=True,
        form=Form(shown="none"),
    )
    overwrite: bool = setting(False, "replace an existing output folder", new=True)
    progress: bool = setting(True, "hide progress bars", new=True)
    fit: dict | None = None  # {"data", "fold", "input_dir", "label_dir"}: fit the ensemble weights first


DEFAULT_WEIGHTS = ("weights/256_best.pth", "weights/352_best.pth")


def _per_model(shown: str) -> Form:
    """One value per checkpoint; without them, ``shown``: what the checkpoint and the recipe give."""
    return Form(shown=shown, many=True)


def _per_size(column: str) -> str:
    """The recipe's value of ``column`` for each size, as the help shows it: ``256: 64, 352: 96``."""
    return ", ".join(f"{size}: {getattr(row, column)}" for size, row in RECIPE.items())


@dataclass(frozen=True)
class InferenceRun:
    """What test.py restores, where the results go, and on which device."""

    input_dir: str = setting("data/test_input_img", "folder of degraded images")
    output_dir: str = setting("results/submission", "where the PNGs and submission.zip go")
    device: str = setting("auto", "auto (CUDA if available), cpu, cuda or cuda:N", new=True)


@dataclass(frozen=True)
class Ensemble:
    """The checkpoints test.py ensembles and, per checkpoint, its tile, stride, batch and weight."""

    weights: tuple[str, ...] = setting(DEFAULT_WEIGHTS, "checkpoints to ensemble", form=Form(many=True))
    tile_sizes: tuple[int, ...] | None = setting(
        None,
        "tile size per checkpoint",
        form=_per_model("its training patch size (256 and 352 for the original's files)"),
    )
    strides: tuple[int, ...] | None = setting(
        None, "tile stride per checkpoint", form=_per_model(f"by its tile: {_per_size('tile_stride')}; tile/4")
    )
    batch_sizes: tuple[int, ...] | None = setting(
        None, "tiles per forward pass per checkpoint", form=_per_model(f"by its tile: {_per_size('tile_batch')}")
    )
    ensemble_weights: tuple[float, ...] | None = setting(
        None,
        "weight per checkpoint, normalised",
        form=_per_model(
            "by the size each was trained on, "
            + " and ".join(f"{row.ensemble_weight:g} for {size}" for size, row in RECIPE.items())
            + " in any order; equal otherwise"
        ),
    )


@dataclass(frozen=True)
class WeightFit:
    """Whether test.py first fits the ensemble weights, and on which labelled images."""

    fit_weights: bool = setting(
        False, "choose the ensemble weights on held-out labelled images (grid step 0.05); --ensemble_weights win"
    )
    fit_data: str = setting("data/train_original", "folder of train_10fold.csv and the training images")
    fit_fold: int = setting(0, "the held-out fold to fit on (make_patch.py --valid_fold)")
    fit_input_dir: str | None = setting(
        None, "fit on this folder of degraded images instead (with --fit_label_dir)", form=Form(shown="—")
    )
    fit_label_dir: str | None = setting(None, "the clean images of --fit_input_dir", form=Form(shown="—"))

    def request(self, ensemble: Ensemble) -> dict | None:
        """``InferenceOptions.fit``: None unless asked for, and when ``--ensemble_weights`` are given (they win)."""
        if not self.fit_weights or ensemble.ensemble_weights:
            return None
        return dict(
            data_dir=self.fit_data, fold=self.fit_fold, input_dir=self.fit_input_dir, label_dir=self.fit_label_dir
        )


INFERENCE_SETTINGS = (InferenceOptions, InferenceRun, Ensemble, WeightFit)  # test.py's flags, in this order


def _one_per_model(values: tuple | None, n: int, flag: str, default: list) -> list:
    if values is None:
        return default
    if len(values) != n:
        fail(f"{flag} has {len(values)} values for {n} checkpoint(s); give one per checkpoint in --weights.")
    if any(v <= 0 for v in values) and flag != "--ensemble_weights":
        fail(f"{flag} values must be positive.")
    return list(values)


def stored_tile(path: str | Path) -> int | None:
    """The tile a checkpoint was trained on, or an ONNX file exported for."""
    if Path(path).suffix.lower() == ".onnx":
        from utils.infer.onnx_model import export_metadata

        return export_metadata(path)["tile"]
    return stored_patch_size(path)


def default_tiles(paths: tuple[str, ...]) -> list[int] | None:
    """Tile sizes from the patch size each checkpoint was trained on; the original's files store none,
    so a pair of them gets the original's 256 and 352."""
    stored = [stored_tile(p) for p in paths]
    if all(stored):
        return stored
    if len(paths) == 2 and not any(stored):
        return [256, 352]
    return None


def model_specs(ensemble: Ensemble) -> list[ModelSpec]:
    """One spec per checkpoint; what is not given comes from the checkpoint and the recipe."""
    weights, n = ensemble.weights, len(ensemble.weights)
    for path in weights:
        if Path(path).is_dir():
            fail(f"--weights {path} is a folder; give checkpoint files, such as {Path(path) / '256_best.pth'}.")
        if not Path(path).is_file():
            fail(
                f"checkpoint {path} does not exist (looked for {Path(path).resolve()}); train one with main.py (its best "
                f"checkpoint is results/<exp>/<size>_best.pth), pass the original's released files, or restore with "
                f"the shipped starter model: --weights {REPO / STARTER}."
            )
    tiles = _one_per_model(ensemble.tile_sizes, n, "--tile_sizes", default_tiles(weights))
    if tiles is None:
        fail(f"--tile_sizes is needed: {', '.join(weights)} do not all store the patch size they were trained on.")
    strides = _one_per_model(ensemble.strides, n, "--strides", [recipe_for(t).tile_stride for t in tiles])
    batches = _one_per_model(ensemble.batch_sizes, n, "--batch_sizes", [recipe_for(t).tile_batch for t in tiles])
    mix = _one_per_model(ensemble.ensemble_weights, n, "--ensemble_weights", default_ensemble_weights(tiles))
    return [ModelSpec(Path(p), *rest) for p, *rest in zip(weights, tiles, strides, batches, mix, strict=True)]

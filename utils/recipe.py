"""The solution's recipe, one row per patch size: what the original's 256 and 352 pipelines did differently.

Every script reads its per-size defaults here (make_patch's stride, main.py's augmentation
schedule, restart epoch and validation stride, test.py's tiles and ensemble weight), and so
do the demo, the ablation study and the documentation. A size the original did not use gets
the rule of ``recipe_for``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SizeRecipe:
    size: int  # training patch size = inference tile size
    patch_stride: int  # make_patch.py --stride of the first growth step
    aug_schedule: str  # adaptive augmentation: "epoch:version" steps
    restart_epoch: int  # epoch of the fresh-optimiser restart (0 = none)
    val_stride: int  # tile stride of validation during training
    tile_stride: int  # test.py tile stride
    tile_batch: int  # test.py tiles per forward pass
    ensemble_weight: float  # test.py weight in the 256 + 352 ensemble


RECIPE = {
    256: SizeRecipe(256, 128, "1:1,3:3", 58, 128, 64, 16, 0.4),
    352: SizeRecipe(352, 176, "1:1,6:2,25:3", 25, 176, 96, 32, 0.6),
}


def recipe_for(size: int) -> SizeRecipe:
    """The original's row for 256 and 352; another size: half-size strides, a quarter-size tile stride,
    batch 16 and the 256 row's schedule (its weight is only used when no other model has one)."""
    if size in RECIPE:
        return RECIPE[size]
    base = RECIPE[256]
    half, quarter = max(1, size // 2), max(1, size // 4)
    return SizeRecipe(size, half, base.aug_schedule, base.restart_epoch, half, quarter, 16, 1.0)


def default_ensemble_weights(tiles: list[int]) -> list[float]:
    """Each model's weight by the size it was trained on: the original's 0.4 for 256 and 0.6 for 352, in
    whatever order ``--weights`` lists them; equal weights where a size repeats or the recipe has none."""
    if len(set(tiles)) == len(tiles) and all(t in RECIPE for t in tiles):
        return [RECIPE[t].ensemble_weight for t in tiles]
    return [1.0 / len(tiles)] * len(tiles)

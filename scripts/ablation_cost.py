"""What the study will cost, said before it starts: a timed training step and the tiles of the test images."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from scripts.ablation_plan import (
    StudySettings,
    TrainVariant,
    inference_variants,
)
from utils.recipe import recipe_for

if TYPE_CHECKING:
    from scripts.ablation import Study

# Seconds a run spends outside its training steps (start-up, patches, validation), per epoch and once;
# a forward pass over one 256x256 tile costs about this share of a training step per sample.
OVERHEAD_PER_RUN, OVERHEAD_PER_EPOCH, FORWARD_SHARE = 20.0, 1.5, 0.4


def step_seconds(settings: StudySettings) -> float:
    """Seconds per training step at size 256 on this machine, timed on a few steps of the study's model."""
    import torch

    from models.hinet import HINet
    from utils.train.losses import RestorationLoss

    model = HINet(wf=settings.wf, depth=settings.depth)
    optimizer, criterion = torch.optim.Adam(model.parameters()), RestorationLoss()
    x = torch.rand(settings.batch_size, 3, 256, 256)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        optimizer.zero_grad()
        criterion(model(x), x).backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


# The test.py runs per seed, in forward passes over the test images: three tilings, and TTA's eight.
INFERENCE_PASSES = 3 + 8


def test_tiles(data: Path) -> tuple[int, int]:
    """Tiles of 256 and 352 (in 256x256 equivalents) over the held-out test images: (256 model, both models)."""
    from utils.core.tiling import count_tiles
    from utils.data.images import image_size, list_images

    sizes = [image_size(p) for p in list_images(data / "test_input_img")] if (data / "test_label_img").is_dir() else []
    per_model = [
        sum(count_tiles(h, w, t, recipe_for(t).tile_stride, "stride_aware") for h, w in sizes) * (t / 256) ** 2
        for t in (256, 352)
    ]
    return round(per_model[0]), round(sum(per_model))


def expected_minutes(study: Study, runs: list[tuple[TrainVariant, int]], per_step: float) -> tuple[float, float]:
    """(training runs, inference variants) in minutes, from the time of one training step here."""
    s = study.settings
    tile = per_step / s.batch_size * FORWARD_SHARE
    single, pair = test_tiles(study.data)
    train = sum(s.steps * per_step * (v.img_size / 256) ** 2 + single * tile for v, _ in runs)
    overhead = len(runs) * (OVERHEAD_PER_RUN + s.epochs * OVERHEAD_PER_EPOCH)
    todo = sum(1 for seed in s.seeds for v in inference_variants() if not study.finished("inference", v.name, seed))
    inference = pair * tile * INFERENCE_PASSES * len(s.seeds) * todo / max(1, len(inference_variants()) * len(s.seeds))
    return (train + overhead) / 60, inference / 60

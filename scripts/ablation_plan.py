"""What the ablation study runs: its settings, its variants and the original's published figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.hinet import OUTPUTS
from utils.core.settings import Allowed, Form, check_ranges, setting
from utils.core.tiling import tile_starts
from utils.data.folds import read_pairs_csv
from utils.data.patches import PatchSettings, bright_counts
from utils.presets import PRESETS
from utils.recipe import recipe_for

# The original's numbers (contest data, size 256 unless noted): validation and public-test PSNR.
# None where the write-up gives none.
ORIGINAL_THRESHOLD = 1000

CSV_COLUMNS = ["kind", "variant", "seed", "patches", "steps", "minutes", "val_psnr", "test_psnr", "test_ssim"]
STUDY_FILES = ("study.json", "ablation.csv", "ablation.md", "ablation.png", "commands.log")  # beside its runs


_RUN = PRESETS["ablation"].training  # main.py's settings in every run of the study; its flags change some


@dataclass(frozen=True)
class StudySettings:
    """Everything a study's numbers depend on; a study continues only with the same settings."""

    seeds: tuple[int, ...] = setting((1, 2), "training seeds, comma-separated: every variant is trained once per seed")
    epochs: int = setting(_RUN["epochs"], "epochs per training run", Allowed(minimum=1))
    steps_per_epoch: int = setting(
        _RUN["steps_per_epoch"],
        "batches per epoch, the same for every variant (main.py --steps_per_epoch)",
        Allowed(minimum=1),
    )
    batch_size: int = setting(_RUN["batch_size"], "training batch", Allowed(minimum=1))
    wf: int = setting(_RUN["wf"], "HINet width", Allowed(minimum=1))
    depth: int = setting(
        _RUN["depth"], "HINet depth (at most 6: 352 must be a multiple of 2^(depth-1))", Allowed(minimum=1)
    )
    output: str = setting(
        _RUN["output"],
        "model output (main.py --output): tiny sigmoid models on dark scenes can collapse to black",
        Allowed(choices=OUTPUTS),
    )
    initial_lr: float = setting(_RUN["initial_lr"], "learning rate after the warm-up", Allowed(positive=True))
    min_lr: float = setting(_RUN["min_lr"], "floor of the cosine schedule", Allowed(minimum=0))
    thresholds: tuple[int, ...] = setting(
        (), "brightness thresholds to compare, comma-separated", form=Form(shown="from the data (auto_thresholds)")
    )
    growths: tuple[int, ...] = setting((1, 2, 3), "larger-patch sets to compare (make_patch.py --patch_growth_count)")
    folds: int = setting(
        10, "K-fold split of the training images; fold 0 is held out for validation", Allowed(minimum=2)
    )
    valid_fold: int = 0
    device: str = setting("auto", "auto (CUDA if available), cpu, cuda or cuda:N")

    def problems(self) -> list[str]:
        """What no study can run with, beyond each setting's own range."""
        found = check_ranges(self)
        if not self.seeds:
            found.append("--seeds needs at least one seed")
        if not set(self.growths) <= {1, 2, 3, 4}:
            found.append(
                f"--growths {','.join(map(str, self.growths))}: growth steps are 1 to 4 (make_patch.py --patch_growth_count)"
            )
        if any(t < 0 for t in self.thresholds):
            found.append("--thresholds must not be negative")
        if self.depth > 6:
            found.append(f"--depth {self.depth}: 352 is a multiple of 2^(depth-1) only up to depth 6")
        if not found and self.min_lr > self.initial_lr:
            found.append(f"--min_lr {self.min_lr:g} is above --initial_lr {self.initial_lr:g}")
        return found

    @property
    def steps(self) -> int:
        return self.epochs * self.steps_per_epoch


QUICK = {"seeds": (1,), "epochs": 6, "steps_per_epoch": 16}


@dataclass(frozen=True)
class TrainVariant:
    """One training recipe: which patches (threshold, growth steps, size) and which augmentation schedule."""

    name: str
    label: str
    group: str
    v_threshold: int = ORIGINAL_THRESHOLD
    growth: int = 2
    aug_schedule: str | None = None  # None: the size's adaptive schedule (the full recipe)
    img_size: int = 256
    compare_with: str | None = None
    original: tuple[float | None, float | None] = (None, None)

    @property
    def dataset(self) -> str:
        """Patch folder name under ``<data>/train/`` (make_patch.py and main.py ``--dataset``)."""
        return f"ablation_v{self.v_threshold}_g{self.growth}"


@dataclass(frozen=True)
class InferenceVariant:
    """One way to restore the test images with the full recipe's checkpoints, and the column it reads."""

    name: str
    label: str
    tile_mode: str = "stride_aware"
    tta: bool = False
    column: str = "ensemble"
    compare_with: str | None = None
    original: tuple[float | None, float | None] = field(default=(None, None))

    @property
    def test_run(self) -> str:
        return f"{self.tile_mode}{'_tta' if self.tta else ''}"


def training_variants(thresholds: tuple[int, ...], growths: tuple[int, ...]) -> list[TrainVariant]:
    """The techniques one by one, then the larger-patch sets and thresholds with the full recipe."""
    resize_only, flips_from_start = "1:1", "1:3"
    variants = [
        TrainVariant("neither", "neither technique", "techniques", 0, 1, resize_only),
        TrainVariant("larger", "larger patches only", "techniques", 0, 2, resize_only, compare_with="neither",
                     original=(28.22, 27.26)),
        TrainVariant("threshold", "brightness threshold only", "techniques", growth=1, aug_schedule=resize_only,
                     compare_with="larger", original=(29.96, 27.50)),
        TrainVariant("both", "threshold + larger patches", "techniques", aug_schedule=resize_only,
                     compare_with="threshold", original=(31.10, 29.89)),
        TrainVariant("flips", "+ flip/rotate/colour from epoch 1", "techniques", aug_schedule=flips_from_start,
                     compare_with="both", original=(31.27, 29.71)),
        TrainVariant("full", "+ adaptive augmentation (full recipe)", "techniques", compare_with="flips",
                     original=(31.97, 30.62)),
    ]  # fmt: skip
    published_growth = {1: 27.25, 2: 30.62, 3: 28.87, 4: 29.15}
    for growth in growths:
        if growth != 2:
            crops = "+".join(["256", "512", *(str(256 * i) for i in range(3, growth + 1))][:growth])
            variants.append(TrainVariant(f"growth{growth}", f"patch sets {crops}", "larger patches", growth=growth,
                                         compare_with="full", original=(None, published_growth.get(growth))))  # fmt: skip
    for threshold in thresholds:
        if threshold != ORIGINAL_THRESHOLD:
            variants.append(TrainVariant(f"threshold{threshold}", f"threshold {threshold} pixels", "threshold",
                                         v_threshold=threshold, compare_with="full"))  # fmt: skip
    variants.append(TrainVariant("full352", "full recipe at 352", "size 352", img_size=352, original=(32.75, 30.96)))
    return variants


def inference_variants() -> list[InferenceVariant]:
    """Tiling, single models against the ensemble, and TTA, on the full recipe's checkpoints."""
    return [
        InferenceVariant("single256", "256 model alone", column="256", original=(None, 30.62)),
        InferenceVariant("single352", "352 model alone", column="352", original=(None, 30.96)),
        InferenceVariant("ensemble", "ensemble 0.4/0.6, stride-aware tiles", compare_with="single352",
                         original=(None, 31.26)),
        InferenceVariant("tiles_all", "ensemble, all tiles", "all", compare_with="ensemble",
                         original=(None, 31.26 - 0.016)),
        InferenceVariant("tiles_shift", "ensemble, shift tiles", "shift", compare_with="ensemble"),
        InferenceVariant("tta", "ensemble + TTA (8 flips/rotations)", tta=True, compare_with="ensemble"),
    ]  # fmt: skip


def _two_figures(value: float) -> int:
    digits = max(0, len(str(int(value))) - 2)
    return max(1, int(round(value, -digits)))


def auto_thresholds(counts: np.ndarray) -> tuple[int, ...]:
    """Three thresholds spanning the data's brightness: the 25th and 90th percentiles of the bright-pixel
    counts of the crops that have any, with the original's 1000 between them (its run is the full
    recipe's, so it is not trained twice); the median instead where 1000 lies outside.

    ``counts``: pixels with HSV value above 200 in each training-size crop.
    """
    lit = counts[counts > 0]
    if lit.size == 0:
        return ()
    low, middle, high = (_two_figures(float(np.percentile(lit, q))) for q in (25, 50, 90))
    middle = ORIGINAL_THRESHOLD if low < ORIGINAL_THRESHOLD < high else middle
    return tuple(sorted({low, middle, high}))


def brightness_counts(data: Path, size: int = 256) -> np.ndarray:
    """Bright-pixel counts of every training-size crop of the training inputs (the base rule's grid)."""
    from utils.data.images import read_bgr

    counts = []
    for name in read_pairs_csv(data / "train_original" / "train.csv")["input_img"]:
        img = read_bgr(data / "train_original" / "train_input_img" / name)
        h, w = img.shape[:2]
        counts.append(bright_counts(img, tile_starts(h, size, size // 2, "all"), tile_starts(w, size, size // 2, "all"), size).ravel())  # fmt: skip
    return np.concatenate(counts)


def fitting_variants(variants: list[TrainVariant], data: Path) -> tuple[list[TrainVariant], list[str]]:
    """The variants whose crops fit the training images, and a note for each that does not."""
    from utils.data.images import image_size

    original = data / "train_original"
    names = read_pairs_csv(original / "train.csv")["input_img"]
    side = min(min(image_size(original / "train_input_img" / n) or (0, 0)) for n in names)
    kept, notes = [], []
    for v in variants:
        crop = max(c for c, _ in PatchSettings(img_size=v.img_size, stride=recipe_for(v.img_size).patch_stride, resize=v.img_size,
                                                patch_growth_count=v.growth).growth_steps())  # fmt: skip
        if crop <= side:
            kept.append(v)
        else:
            notes.append(f"{v.label}: skipped, its {crop}x{crop} crops do not fit images {side} pixels high or wide")
    return kept, notes

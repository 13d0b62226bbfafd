import csv

import numpy as np
import pytest

from conftest import FIXTURES
from utils.core.errors import UserError
from utils.data.augment import aug_version_at, build_augmentation, parse_aug_schedule
from utils.recipe import RECIPE, default_ensemble_weights, recipe_for
from utils.train.config import TrainConfig
from utils.train.schedule import LRSchedule


@pytest.mark.parametrize("size", [256, 352])
def test_learning_rate_matches_original(size):
    schedule = TrainConfig(img_size=size).schedule()
    rows = list(csv.DictReader((FIXTURES / "lr_schedule.csv").read_text().splitlines()))
    assert len(rows) == 120
    for row in rows:
        expected = float(row[f"lr_{size}"])
        assert schedule(int(row["epoch"])) == pytest.approx(expected, rel=1e-4, abs=1e-12), row["epoch"]


def test_restart_epochs():
    assert TrainConfig(img_size=256).schedule().is_restart(58)
    assert TrainConfig(img_size=352).schedule().is_restart(25)
    assert not LRSchedule(restart_epoch=None).is_restart(58)
    assert LRSchedule(restart_epoch=None)(100) > LRSchedule(restart_epoch=58)(100)


def test_size_table_and_overrides():
    assert TrainConfig(img_size=256).aug_schedule == RECIPE[256].aug_schedule == "1:1,3:3"
    assert TrainConfig(img_size=352).restart_epoch == 25
    assert TrainConfig(img_size=352, aug_schedule="1:2", restart_epoch=0).schedule().restart_epoch is None


def test_one_recipe_row_per_size_feeds_every_script():
    assert [(r.patch_stride, r.val_stride, r.tile_stride, r.tile_batch) for r in RECIPE.values()] == [
        (128, 128, 64, 16),
        (176, 176, 96, 32),
    ]
    assert default_ensemble_weights([256, 352]) == [0.4, 0.6]
    assert default_ensemble_weights([352, 256]) == [0.6, 0.4]  # by size, not by position
    assert default_ensemble_weights([256, 256]) == [0.5, 0.5]  # the recipe says nothing of two 256 models
    assert default_ensemble_weights([256, 352, 128]) == [1 / 3] * 3
    other = recipe_for(128)  # a size the original did not train: half and quarter strides, the 256 schedule
    assert (other.patch_stride, other.val_stride, other.tile_stride, other.aug_schedule) == (64, 64, 32, "1:1,3:3")
    assert TrainConfig(img_size=128).restart_epoch == RECIPE[256].restart_epoch


def test_augmentation_schedule():
    sched = parse_aug_schedule("1:1,6:2,25:3")
    assert [aug_version_at(sched, e) for e in (1, 5, 6, 24, 25, 400)] == [1, 1, 2, 2, 3, 3]
    for bad in ("3:1", "1:4", "one:1"):
        with pytest.raises(UserError, match="--aug_schedule"):
            parse_aug_schedule(bad)


def _dihedral(x):
    for k in range(4):
        yield np.rot90(x, k)
        yield np.rot90(x[:, ::-1], k)


def test_geometry_is_shared_and_colour_touches_the_input_only():
    rng = np.random.default_rng(0)
    image = rng.random((32, 32, 3)).astype(np.float32)
    v2 = build_augmentation(32, 2)
    moved = 0
    for seed in range(20):
        v2.set_random_seed(seed)
        out = v2(image=image, mask=image.copy())
        assert np.array_equal(out["image"], out["mask"])  # flips and rotations move both alike
        moved += not np.array_equal(out["mask"], image)
    assert moved > 0

    v3 = build_augmentation(32, 3)
    jittered = 0
    for seed in range(60):
        v3.set_random_seed(seed)
        out = v3(image=image, mask=image.copy())
        if any(np.array_equal(out["mask"], g) for g in _dihedral(image)):  # target only moved, not recoloured
            jittered += not np.allclose(out["image"], out["mask"], atol=1e-6)
    assert jittered > 0  # colour jitter (p=0.3) changed the input and left the target alone


def test_every_training_setting_says_what_resume_does_with_it():
    from dataclasses import fields

    from utils.core.settings import RESUME_POLICIES
    from utils.train.resume import merge_resumed

    for f in fields(TrainConfig):
        assert f.metadata.get("resume") in RESUME_POLICIES, f.name
        assert (f.metadata["resume"] == "changeable") == bool(f.metadata.get("resume_note")), f.name
    stored = {f.name: getattr(TrainConfig(epochs=10, wf=8, num_workers=7), f.name) for f in fields(TrainConfig)}
    cfg = TrainConfig(epochs=20, num_workers=0)
    notes = merge_resumed(cfg, stored, {"epochs", "num_workers"})
    assert (cfg.epochs, cfg.wf, cfg.num_workers) == (20, 8, 0)  # changed as given, kept, this invocation's
    assert len(notes) == 1 and notes[0].startswith("changed on resume: --epochs 10 -> 20 (the cosine schedule")
    with pytest.raises(UserError, match=r"--wf 16 \(the run has 8\)"):
        merge_resumed(TrainConfig(wf=16), stored, {"wf"})
    older = {k: v for k, v in stored.items() if k != "light_weight"}  # a run saved before the setting existed
    with pytest.raises(UserError, match=r"--light_weight 1.0 \(the run has 0.0\)"):
        merge_resumed(TrainConfig(light_weight=1.0), older, {"light_weight"})
    cfg = TrainConfig(light_weight=1.0)
    merge_resumed(cfg, older, set())
    assert cfg.light_weight == 0.0  # it ran without the term, and resumes without it


def test_a_seed_numpy_cannot_take_is_refused_as_a_setting():
    from utils.core.settings import check_ranges

    assert check_ranges(TrainConfig(seed=-1)) == ["--seed must not be negative (got -1)"]
    assert check_ranges(TrainConfig(seed=2**32)) == [f"--seed must be at most {2**32 - 1} (got {2**32})"]
    assert check_ranges(TrainConfig(seed=2**32 - 1)) == []
    import numpy as np  # a NumPy float is a float too: NaN refused

    assert check_ranges(TrainConfig(clean_weight=np.float32("nan"))) == [
        "--clean_weight must be zero or a positive number (got nan)"
    ]

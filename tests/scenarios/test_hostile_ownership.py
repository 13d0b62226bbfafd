"""A careless or hostile user against the ownership rules: every refused run changes nothing on disk.

Each case hashes the whole tree before and after, and expects exit status 2 with one sentence.
"""

import json
import os
import shutil

import pytest

import main as train_script
import make_patch
from conftest import FIXTURES, hold_lock, load_script, run_cli, tree_hashes
from scripts import flare_data
from utils.core.errors import UserError
from utils.core.manifest import MANIFEST, file_record, ownership_problem, remove_output
from utils.core.outputs import staged_dir
from utils.flare.data_settings import FlareDataSettings

test_script = load_script("test")
REF = FIXTURES / "inference_reference"
TINY_BANK = {"psf_count": 3, "psf_grid": 128, "psf_size": 64}


def _refused(module, argv, capsys, root, message):
    before = tree_hashes(root)
    code, _, err = run_cli(module, [*argv, "--no_progress"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert tree_hashes(root) == before
    return err


FOREIGN_OUTPUT = {
    "the training set": ("data/train_original", "holds 'train_input_img', which this project did not write"),
    "a training run": ("results/001", "holds a run written by test, not a submission"),
    "a patch set": ("data/train/10Folds/0/resize64", "holds a patches written by test, not a submission"),
}


@pytest.mark.parametrize("case", list(FOREIGN_OUTPUT))
def test_a_submission_never_replaces_another_kind_of_output(world, capsys, case):
    folder, message = FOREIGN_OUTPUT[case]
    _refused(test_script, ["--output_dir", folder, "--overwrite"], capsys, world, message)


def test_a_changed_or_copied_submission_is_not_ours(world, capsys):
    sub = world / "results" / "submission"
    with staged_dir(sub, "submission", "test.py", True) as stage:  # what test.py leaves, made quickly
        for name in ("test_20000.png", "test_20001.png"):
            shutil.copy(REF / "expected_submission" / name, stage / name)
    (sub / "test_20000.png").write_bytes(b"my own edit")  # a user's PNG under a name the project uses
    _refused(test_script, ["--overwrite", "--no_zip"], capsys, world, "'test_20000.png', which was changed")
    photos = world / "photos"
    photos.mkdir()
    (photos / "test_20001.png").write_bytes(b"a holiday picture")
    shutil.copy(sub / MANIFEST, photos / MANIFEST)  # a manifest copied into a photo folder proves nothing
    _refused(test_script, ["--output_dir", "photos", "--overwrite"], capsys, world, "'test_20001.png', which was")


def test_a_second_run_into_a_busy_output_is_refused_naming_the_other(world, capsys):
    holder = hold_lock(world / "results" / "submission")
    try:
        err = _refused(test_script, [], capsys, world, "--output_dir results/submission")
        assert f"is in use by process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()


def _patch_args(world, *extra):
    src = world / "data" / "train_original"
    return ["--folds", 3, "--img_size", 64, "--stride", 64, "--resize", 64, "--patch_growth_count", 1,
            "--process_num", 1, "--input_path", src / "train_input_img", "--target_path", src / "train_label_img",
            "--csv_path", src, "--save_path", world / "data", *extra]  # fmt: skip


def test_patches_in_use_by_a_training_are_not_replaced(world, capsys):
    training = hold_lock(world / "data/train/10Folds/0/resize64", shared=True)  # as main.py holds its patches
    try:
        err = _refused(make_patch, _patch_args(world, "--overwrite"), capsys, world, "patch folder")
        assert f"in use by process {training.pid}" in err
    finally:
        training.kill()
        training.wait()


def test_a_fold_table_that_cannot_be_written_is_found_before_the_patches_change(world, capsys):
    (world / "data" / "train_original" / "train_10fold.csv").mkdir()  # cannot become a file
    _refused(make_patch, _patch_args(world, "--overwrite"), capsys, world, "train_10fold.csv cannot be written")


def test_a_busy_run_is_not_resumed_twice(world, capsys):
    holder = hold_lock(world / "results" / "001")
    try:
        argv = ["--data_path", "data", "--model_path", "results", "--img_size", 64, "--resume"]
        err = _refused(train_script, argv, capsys, world, "run folder")
        assert f"in use by process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()


USER_FILES_IN_DEMO = {
    "the training inputs": "train_original/train_input_img/mine.png",
    "the test inputs": "test_input_img/mine.png",
    "the patch folders": "train/mine.png",
}


@pytest.mark.parametrize("case", list(USER_FILES_IN_DEMO))
def test_the_demo_replaces_only_its_own_data(tmp_path, capsys, case):
    root = tmp_path / "data"
    flare_data.generate(FlareDataSettings(root, 2, 1, 96, 128, progress=False, workers=1, **TINY_BANK))
    (root / USER_FILES_IN_DEMO[case]).parent.mkdir(parents=True, exist_ok=True)
    (root / USER_FILES_IN_DEMO[case]).write_bytes(b"a user's picture")
    argv = ["--root", root, "--train_count", 2, "--test_count", 1, "--height", 96, "--width", 128, "--overwrite",
            "--psf_count", 3, "--psf_grid", 128, "--psf_size", 64]  # fmt: skip
    _refused(flare_data, argv, capsys, tmp_path, "mine.png")


def test_an_interrupted_overwrite_keeps_the_earlier_run(patch_data, tmp_path, capsys, monkeypatch):
    argv = ["--data_path", patch_data, "--model_path", tmp_path, "--img_size", 256, "--wf", 4, "--depth", 3,
            "--batch_size", 8, "--pred_batch", 8, "--num_workers", 0, "--epochs", 1, "--steps_per_epoch", 1,
            "--no_progress"]  # fmt: skip
    assert run_cli(train_script, argv, capsys)[0] == 0
    before = tree_hashes(tmp_path)

    def interrupted(*args):
        raise KeyboardInterrupt  # SIGTERM a few seconds into the new run, while it reads its data

    monkeypatch.setattr("utils.train.trainer.check_data", interrupted)
    code, _, err = run_cli(train_script, [*argv, "--overwrite"], capsys)
    assert code == 130 and tree_hashes(tmp_path) == before


def test_a_forged_manifest_cannot_reach_outside_its_folder(world, capsys):
    victim = world / "victim.txt"
    victim.write_text("precious")
    out = world / "results" / "forged"
    with staged_dir(out, "submission", "test.py", True) as stage:
        (stage / "test_20000.png").write_bytes(b"x")
    manifest = json.loads((out / MANIFEST).read_text())
    record = file_record(victim)
    for name in ("../../victim.txt", str(victim)):  # relative escape and absolute path, with true hashes
        manifest["files"][name] = record
        (out / MANIFEST).write_text(json.dumps(manifest))
        _refused(test_script, ["--output_dir", out, "--overwrite"], capsys, world, "did not write there")
        assert remove_output(out, "submission") and victim.read_text() == "precious"
        del manifest["files"][name]


def test_an_edit_that_restores_the_modification_time_is_still_found(world, capsys, monkeypatch):
    out = world / "results" / "submission"
    with staged_dir(out, "submission", "test.py", True) as stage:
        (stage / "metrics.csv").write_text("image,psnr\na,1\n")
    stat = (out / "metrics.csv").stat()
    (out / "metrics.csv").write_text("image,psnr\na,2\n")  # same size, other bytes
    os.utime(out / "metrics.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert remove_output(out, "submission") == ["metrics.csv"]  # never deleted without its hash compared
    assert (out / "metrics.csv").read_text() == "image,psnr\na,2\n"
    with pytest.raises(UserError, match="'metrics.csv', which was changed"), staged_dir(out, "submission", "t", True):
        pass  # the last check before the swap compares hashes: nothing replaced


def test_leftovers_of_killed_runs_never_block_a_replacement(world):
    run = world / "results" / "001"
    for target in (run / "64_best.pth", world / "data" / "train_original" / "train_10fold.csv"):
        holder = hold_lock(target)  # a lock file and a staging folder, then SIGKILL
        holder.kill()
        holder.wait()
    assert ownership_problem(run, "run") is None
    assert not [p for p in run.iterdir() if ".partial-" in p.name]  # the killed run's staging folder is gone
    busy = hold_lock(world / "results" / "001" / "last.pth")
    try:
        assert "is being written by a run in progress" in ownership_problem(run, "run")
    finally:
        busy.kill()
        busy.wait()
    assert ownership_problem(run, "run") is None
    demo = world / "demo"
    tiny = {"progress": False, "workers": 1, **TINY_BANK}
    flare_data.generate(FlareDataSettings(demo, 2, 1, 96, 128, **tiny))
    (demo / "train_original" / ".train_10fold.csv.hinet-lock").write_text("")  # a killed training's
    flare_data.generate(FlareDataSettings(demo, 2, 1, 96, 128, overwrite=True, **tiny))
    assert not (demo / "train_original" / ".train_10fold.csv.hinet-lock").exists()


def test_names_and_sizes_that_would_write_elsewhere_are_refused(world, capsys):
    _refused(make_patch, _patch_args(world, "--dataset", ".."), capsys, world, "must be a plain folder name")
    argv = ["--weights", "weights/256_best.pth", "--tile_sizes", 100000, "--output_dir", "results/big"]
    _refused(test_script, argv, capsys, world, "is larger than 8192")

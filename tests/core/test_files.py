"""Ownership, staging and locks: the exact manifest is the only proof that a file is the project's."""

import json
import os
import time
from pathlib import Path

import pytest

from conftest import hold_lock
from utils.core.errors import UserError
from utils.core.locks import atomic_path, lock_path, output_lock, remove_stale
from utils.core.manifest import MANIFEST, has_files, ownership_problem, read_manifest, remove_output, write_manifest
from utils.core.outputs import staged_dir
from utils.core.owned import Output, check_output


def _stage(target, *names, kind="submission"):
    with staged_dir(target, kind, "test", True) as stage:
        for name in names:
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_text(name)


def test_staged_dir_replaces_only_on_success_and_records_every_file(tmp_path):
    target = tmp_path / "out"
    _stage(target, "a.txt", "sub/b.txt")
    manifest = read_manifest(target)
    assert manifest["kind"] == "submission" and sorted(manifest["files"]) == ["a.txt", "sub/b.txt"]
    assert manifest["dirs"] == ["sub"] and len(manifest["files"]["a.txt"]["sha256"]) == 64
    with pytest.raises(RuntimeError), staged_dir(target, "submission", "test", True) as stage:
        (stage / "b.txt").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "a.txt", "sub"]  # the earlier result, unmixed
    _stage(target, "c.txt")
    assert sorted(p.name for p in target.iterdir()) == [MANIFEST, "c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_failed_run_removes_the_parents_it_created(tmp_path):
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "x" / "y" / "out", "submission", "test", True):
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    assert not has_files(tmp_path) and not has_files(tmp_path / "missing")


def test_a_foreign_file_appearing_during_the_run_is_kept(tmp_path):
    target = tmp_path / "out"
    _stage(target, "a.txt")
    with pytest.raises(UserError, match="notes.md"), staged_dir(target, "submission", "test", True):
        (target / "notes.md").write_text("mine")
    assert (target / "notes.md").read_text() == "mine" and (target / "a.txt").is_file()


NOT_OURS = {
    "a user's file beside the outputs": (lambda t: (t / "keep.md").write_text("mine"), "holds 'keep.md'"),
    "a user's folder named like an output": (lambda t: (t / "folder.png").mkdir(), "holds 'folder.png'"),
    "an output changed by the user": (lambda t: (t / "a.txt").write_text("edited!"), "'a.txt', which was changed"),
    "a forged blank-cheque marker": (
        lambda t: (t / MANIFEST).write_text(json.dumps({"entries": ["*"]})),
        "holds 'a.txt', which this project did not",
    ),
    "a manifest of another kind": (
        lambda t: (t / MANIFEST).write_text((t / MANIFEST).read_text().replace("submission", "patches")),
        "holds a patches",
    ),
}


@pytest.mark.parametrize("case", list(NOT_OURS))
def test_overwrite_refuses_anything_but_an_unchanged_output_of_the_same_kind(tmp_path, case):
    target = tmp_path / "out"
    _stage(target, "a.txt")
    change, message = NOT_OURS[case]
    change(target)
    before = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else b"") for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match=message):
        check_output(Output(Path(target), "submission", "--output_dir", "test", True))
    assert remove_output(target, "submission")  # even asked directly, it keeps what is not provably ours
    after = sorted((p.relative_to(tmp_path), p.read_bytes() if p.is_file() else b"") for p in tmp_path.rglob("*"))
    users = [b for b in before if b[0].name != MANIFEST and b[1] != b"a.txt"]  # all but the unchanged output
    assert users and set(users) <= set(after)


def test_a_manifest_copied_into_a_photo_folder_proves_nothing(tmp_path):
    _stage(tmp_path / "out", "test_20000.png")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "test_20000.png").write_text("my holiday")  # same name, other bytes
    (photos / MANIFEST).write_bytes((tmp_path / "out" / MANIFEST).read_bytes())
    assert "changed after" in ownership_problem(photos, "submission")
    assert remove_output(photos, "submission") == ["test_20000.png"]
    assert (photos / "test_20000.png").read_text() == "my holiday"


def test_nested_outputs_are_the_parents_only_when_listed(tmp_path):
    study = tmp_path / "study"
    _stage(study, "study.json", kind="study")
    _stage(study / "runs" / "r1", "last.pth", kind="run")
    assert "holds 'runs'" in ownership_problem(study, "study")  # not yet listed
    write_manifest(study, "study", "test", [], {"runs/r1": "run"})
    assert ownership_problem(study, "study") is None
    (study / "runs" / "r1" / "mine.txt").write_text("x")
    assert "runs/r1/mine.txt" in ownership_problem(study, "study")
    (study / "runs" / "r1" / "mine.txt").unlink()
    assert remove_output(study, "study") == [] and not study.exists()


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A working folder with inputs, labels, a checkpoint, a user's file and one earlier result."""
    monkeypatch.chdir(tmp_path)
    for folder in ("data/in", "data/labels", "weights"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "data/in/a.png").write_bytes(b"x")
    (tmp_path / "data/labels/a.png").write_bytes(b"y")
    (tmp_path / "weights/m.pth").write_bytes(b"z")
    (tmp_path / "notes.txt").write_text("mine")
    _stage(tmp_path / "results/sub", "old.txt")
    return {"input folder": "data/in", "labels": "data/labels", "checkpoint": "weights/m.pth"}


REFUSED = {
    "the input folder": ("data/in", "overlaps the input folder"),
    "inside the input folder": ("data/in/out", "overlaps the input folder"),
    "the parent of inputs and labels": ("data", "overlaps the input folder"),
    "the checkpoint's folder": ("weights", "overlaps the checkpoint"),
    "the working folder": (".", "current working folder"),
    "the parent folder": ("..", "current working folder"),
    "dot-dot back into the inputs": ("results/../data/in", "overlaps the input folder"),
    "a file": ("notes.txt", "is a file"),
    "a path under a file": ("notes.txt/out", "lies under"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_output_folder_never_overlaps_what_it_must_not_touch(layout, case):
    folder, message = REFUSED[case]
    with pytest.raises(UserError, match=message):
        check_output(Output(Path(folder), "submission", "--output_dir", "test", True, layout))


def test_only_folders_the_project_made_are_replaced(layout, tmp_path):
    assert (
        check_output(Output(Path("results/sub"), "submission", "--output_dir", "test", True, layout))
        == tmp_path / "results/sub"
    )
    with pytest.raises(UserError, match="already holds results; pass --overwrite"):
        check_output(Output(Path("results/sub"), "submission", "--output_dir", "test", False, layout))
    with pytest.raises(UserError, match="holds a submission written by test, not a run"):
        check_output(Output(Path("results/sub"), "run", "run folder", "test", True, layout))
    (tmp_path / "results/mine").mkdir()
    (tmp_path / "results/mine/photo.png").write_bytes(b"p")  # no manifest: never ours
    with pytest.raises(UserError, match="holds 'photo.png'"):
        check_output(Output(Path("results/mine"), "submission", "--output_dir", "test", True, layout))
    assert (
        check_output(Output(Path("results/new/deeper"), "submission", "--output_dir", "test", False, layout)).name
        == "deeper"
    )


def test_symlink_and_unwritable_output_are_refused(layout, tmp_path):
    os.symlink(tmp_path / "results/sub", tmp_path / "link")
    with pytest.raises(UserError, match="symbolic link"):
        check_output(Output(Path("link"), "submission", "--output_dir", "test", True, layout))
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(UserError, match="cannot be written"):
        check_output(Output(Path("ro/out"), "submission", "--output_dir", "test", True, layout))


def test_a_held_output_is_refused_naming_the_process_and_freed_when_it_dies(tmp_path):
    target = tmp_path / "out"
    proc = hold_lock(target)
    try:
        with pytest.raises(UserError, match=rf"in use by process {proc.pid} on .*since"), output_lock(target, "x"):
            pass
        live_stage = next(p for p in tmp_path.iterdir() if ".partial-" in p.name)
        assert remove_stale(tmp_path) == [] and live_stage.is_dir()  # a live run's staging folder is kept
    finally:
        proc.kill()
        proc.wait()
    assert remove_stale(tmp_path) == [live_stage]  # its process is gone: removed
    with output_lock(target, "x"):  # the lock died with its holder
        assert lock_path(target).is_file()
    assert not lock_path(target).exists()


def test_readers_share_a_lock_that_a_writer_cannot_take(tmp_path):
    target = tmp_path / "patches"
    proc = hold_lock(target, shared=True)
    try:
        with output_lock(target, "patch folder", shared=True):  # a second training on the same patches
            pass
        with pytest.raises(UserError, match="patch folder .* is in use"), output_lock(target, "patch folder"):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_names_that_look_like_ours_are_never_taken_for_ours(tmp_path):
    lookalikes = [".thesis.partial-4000000", ".photos.partial-1", ".x.partial-" + "a" * 32]
    for name in lookalikes:
        (tmp_path / name).mkdir()
        (tmp_path / name / "chapter.tex").write_text("mine")
    (tmp_path / ".notes.tmp-123456").write_text("mine")
    (tmp_path / ("." + "y.partial-" + "b" * 32)).mkdir()
    (tmp_path / ("." + "y.partial-" + "b" * 32) / ".hinet-stage").write_text("c" * 32)  # token does not match
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert remove_stale(tmp_path) == []
    with atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"1")
    _stage(tmp_path / "out", "a.txt")
    assert (tmp_path / "x.bin").read_bytes() == b"1"
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.parts[-1] not in ("x.bin",))
    assert [p for p in after if p.parts[0] != "out"] == before


def test_a_killed_writer_leaves_the_earlier_file_and_a_removable_stage(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old")
    proc = hold_lock(target)
    proc.kill()
    proc.wait()
    time.sleep(0.1)
    assert target.read_text() == "old" and len(remove_stale(tmp_path)) == 1


def test_a_file_named_like_a_lock_is_ours_only_if_it_holds_a_lock_record(tmp_path):
    target = tmp_path / "out"
    _stage(target, "a.txt")
    (target / ".diary.hinet-lock").write_text("my own notes")  # the name, not the content, of a lock file
    assert "holds '.diary.hinet-lock', which this project did not write" in ownership_problem(target, "submission")
    assert remove_output(target, "submission") == [".diary.hinet-lock"]
    assert (target / ".diary.hinet-lock").read_text() == "my own notes"
    with output_lock(tmp_path / "x", "test"):  # a real record, left by a killed run, is ours
        record = lock_path(tmp_path / "x").read_text()
    (target / ".diary.hinet-lock").unlink()
    (target / ".gone.hinet-lock").write_text(record)
    assert ownership_problem(target, "submission") is None


def test_a_removal_that_fails_half_way_never_loses_the_earlier_output(tmp_path, monkeypatch):
    import utils.core.outputs as outputs

    target = tmp_path / "out"
    _stage(target, "a.txt", "b.txt")

    def broken(folder, kind):
        (folder / "a.txt").unlink()  # one file gone, then the disk fails
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(outputs, "remove_output", broken)
    with pytest.raises(OSError):
        _stage(target, "c.txt")
    assert (target / "c.txt").is_file()  # the new output is in place
    (old,) = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert (old / "b.txt").read_text() == "b.txt"  # what was not yet removed is still there, in sight

import os
import subprocess
import sys

import pytest

from utils.errors import UserError
from utils.files import MARKER, atomic_path, check_output_folder, has_files, remove_stale, staged_dir


def _stage(target, *names):
    with staged_dir(target, ["*.txt"], "test") as stage:
        for name in names:
            (stage / name).write_text(name)


def test_staged_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    _stage(target, "a.txt")
    assert (target / "a.txt").read_text() == "a.txt" and (target / MARKER).is_file()
    with pytest.raises(RuntimeError), staged_dir(target, ["*.txt"], "test") as stage:
        (stage / "b.txt").write_text("half")
        raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "a.txt"]  # the earlier result, unmixed
    _stage(target, "c.txt")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_failed_run_removes_the_parents_it_created(tmp_path):
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "x" / "y" / "out", ["*"], "test"):
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    assert not has_files(tmp_path) and not has_files(tmp_path / "missing")


def test_a_foreign_file_appearing_during_the_run_is_kept(tmp_path):
    target = tmp_path / "out"
    _stage(target, "a.txt")
    with pytest.raises(UserError, match="notes.md"), staged_dir(target, ["*.txt"], "test"):
        (target / "notes.md").write_text("mine")
    assert (target / "notes.md").read_text() == "mine" and (target / "a.txt").is_file()


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
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_output_folder_never_overlaps_what_it_must_not_touch(layout, case):
    folder, message = REFUSED[case]
    with pytest.raises(UserError, match=message):
        check_output_folder(folder, "--output_dir", True, layout)


def test_only_folders_the_project_made_are_replaced(layout, tmp_path):
    assert check_output_folder("results/sub", "--output_dir", True, layout) == tmp_path / "results/sub"
    with pytest.raises(UserError, match="already holds results; pass --overwrite"):
        check_output_folder("results/sub", "--output_dir", False, layout)
    (tmp_path / "results/sub/keep.md").write_text("mine")
    with pytest.raises(UserError, match="holds 'keep.md', which this project did not write"):
        check_output_folder("results/sub", "--output_dir", True, layout)
    (tmp_path / "results/mine").mkdir()
    (tmp_path / "results/mine/photo.png").write_bytes(b"p")  # no marker: never ours
    with pytest.raises(UserError, match="holds 'photo.png'"):
        check_output_folder("results/mine", "--output_dir", True, layout)
    assert check_output_folder("results/new/deeper", "--output_dir", False, layout).name == "deeper"


def test_symlink_and_unwritable_output_are_refused(layout, tmp_path):
    os.symlink(tmp_path / "results/sub", tmp_path / "link")
    with pytest.raises(UserError, match="symbolic link"):
        check_output_folder("link", "--output_dir", True, layout)
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(UserError, match="cannot be written"):
        check_output_folder("ro/out", "--output_dir", True, layout)


def test_stale_leftovers_of_killed_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".resize64.partial-{dead_pid}").mkdir()
    (tmp_path / f".last.pth.tmp-{dead_pid}.pth").write_bytes(b"")
    (tmp_path / f".other.partial-{os.getpid()}").mkdir()  # a live process's: kept
    (tmp_path / ".hidden.partial-notapid").mkdir()  # not ours: kept
    removed = remove_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f".resize64.partial-{dead_pid}", f".last.pth.tmp-{dead_pid}.pth"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden.partial-notapid", f".other.partial-{os.getpid()}"]
    with atomic_path(tmp_path / "x.bin") as tmp:
        tmp.write_bytes(b"1")
    assert (tmp_path / "x.bin").read_bytes() == b"1"

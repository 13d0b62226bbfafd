"""Files outside an output are never written, torchrun peers exchange data only, interrupted swaps are finished.

Each case plants what a careless or hostile user sharing the folders could (a link named like a lock or
a log, a manifest of another user, a mount point, a full or read-only disk, a process killed between two
renames) and checks that nothing outside the output changes and the run ends in one sentence or recovers.
"""

import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, load_script, run_cli, tiny_model
from utils.core import locks, outputs
from utils.core.distributed import decode, encode
from utils.core.errors import UserError
from utils.core.locks import lock_path, output_lock
from utils.core.log import get_logger
from utils.core.manifest import MANIFEST, file_record, write_manifest
from utils.core.outputs import staged_dir, swap_journal
from utils.core.owned import Output, check_output
from utils.train.checks import check_run_folder
from utils.train.config import TrainConfig

test_script = load_script("test")


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "user" / "notes.txt"
    path.parent.mkdir()
    path.write_text("my precious notes\n")
    return path


def _plant(link, victim, how: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if how == "symlink":
        link.symlink_to(victim)
    elif how == "hard link":
        os.link(victim, link)
    elif how == "folder":
        link.mkdir()
    elif how == "fifo":
        os.mkfifo(link)
    else:
        link.write_text("a user's file that only has the name of a lock\n")


@pytest.mark.parametrize("shared", [False, True], ids=["writer", "reader"])
@pytest.mark.parametrize("how", ["symlink", "hard link", "folder", "fifo", "user file"])
def test_a_link_or_file_named_like_a_lock_is_never_written_through(tmp_path, victim, how, shared):
    target = tmp_path / "out" / "result"
    _plant(lock_path(target), victim, how)
    refused = pytest.raises(UserError, match="where the lock file of this project belongs|not a lock file of this")
    with refused, output_lock(target, "output", shared=shared):
        pass
    assert victim.read_text() == "my precious notes\n"
    assert os.path.lexists(lock_path(target))  # not ours: left where the user put it


def test_test_py_refuses_a_lock_that_links_elsewhere_and_writes_nothing(tmp_path, victim, capsys):
    model = tiny_model()
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict()}, tmp_path / "m.pth")
    (tmp_path / "in").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "in" / "test_input_1.png"), np.full((16, 16, 3), 90, np.uint8))
    lock_path(tmp_path / "out").symlink_to(victim)
    argv = ["--weights", tmp_path / "m.pth", "--input_dir", tmp_path / "in", "--output_dir", tmp_path / "out",
            "--tile_sizes", 16, "--strides", 16, "--no_zip", "--no_progress"]  # fmt: skip
    code, _, err = run_cli(test_script, argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "symbolic link" in err, err
    assert victim.read_text() == "my precious notes\n" and not (tmp_path / "out").exists()


def test_a_resumed_log_never_appends_through_a_link(tmp_path, victim):
    run = tmp_path / "runs" / "001"
    run.mkdir(parents=True)
    (run / "log.log").symlink_to(victim)
    with pytest.raises(UserError, match="is a symbolic link, where this run.s log belongs"):
        get_logger("hinet.test", run / "log.log")
    cfg = TrainConfig(model_path=str(tmp_path / "runs"), resume=True)
    with pytest.raises(UserError, match="log.log is a link to another file"):
        check_run_folder(cfg)
    (run / "log.log").unlink()
    os.link(victim, run / "metrics.csv")
    with pytest.raises(UserError, match="metrics.csv is a link to another file"):
        check_run_folder(cfg)
    assert victim.read_text() == "my precious notes\n"


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_taking_a_lock_is_one_sentence_and_leaves_no_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(locks.os, "pwrite", _disk_full)
    with pytest.raises(UserError, match="the disk is full"), output_lock(tmp_path / "a" / "out", "output"):
        pass
    assert not (tmp_path / "a").exists()  # neither the lock file nor the folder it made


def test_a_full_disk_while_writing_the_manifest_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "write_manifest", _disk_full)
    with (
        pytest.raises(UserError, match="the disk is full"),
        staged_dir(tmp_path / "out", "submission", "t", False) as s,
    ):
        (s / "a.png").write_bytes(b"x")
    assert sorted(os.listdir(tmp_path)) == []


def _read_only(real_open):
    def fake(path, flags, mode=0o644):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, mode)

    return fake


def test_readers_of_read_only_data_need_no_lock_and_writers_get_one_sentence(tmp_path, monkeypatch):
    data = tmp_path / "data" / "patches"
    data.mkdir(parents=True)
    monkeypatch.setattr(locks, "open_regular", _read_only(locks.open_regular))
    with output_lock(data, "patch folder", shared=True):  # a training reads a read-only data set
        pass
    assert sorted(os.listdir(data.parent)) == ["patches"]
    refused = pytest.raises(UserError, match="cannot write beside .*read-only file system")
    with refused, output_lock(data, "patch folder"):
        pass


def test_an_output_folder_that_is_a_mount_point_is_refused_before_any_work(tmp_path, monkeypatch):
    out = tmp_path / "volume"
    out.mkdir()
    monkeypatch.setattr(outputs.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(out))
    with pytest.raises(UserError, match="is a mount point.*pass a folder inside it"):
        check_output(Output(out, "submission", "--output_dir", "test", False))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_manifest_of_another_user_is_no_proof(tmp_path):
    out = tmp_path / "photos"
    with staged_dir(out, "submission", "test.py", False) as stage:
        (stage / "holiday.png").write_bytes(b"a picture")
    os.chown(out / MANIFEST, 4242, 4242)  # planted by another user, with the true hashes
    with pytest.raises(UserError, match=r"another user \(uid 4242\) wrote"):
        check_output(Output(out, "submission", "--output_dir", "test", True))
    assert (out / "holiday.png").read_bytes() == b"a picture"


def test_an_output_that_appears_while_a_run_works_needs_overwrite(tmp_path):
    out = tmp_path / "out"
    check_output(Output(out, "submission", "--output_dir", "test", False))  # empty when the run starts
    with staged_dir(out, "submission", "first", False) as stage:
        (stage / "a.png").write_bytes(b"first")
    refused = pytest.raises(UserError, match="appeared while this run worked")
    with refused, staged_dir(out, "submission", "second", False) as stage:
        (stage / "a.png").write_bytes(b"second")
    assert (out / "a.png").read_bytes() == b"first"


KILLED_SWAP = """
import os, signal, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from utils.core import outputs
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
renames, real_rename, real_swap = [], os.rename, outputs._rename
def rename(src, dst):
    renames.append(dst)
    if {at!r} == "rename " + str(len(renames)):
        killed()
    real_rename(src, dst)
outputs.os.rename = rename
if {fallback}:  # a file system without RENAME_EXCHANGE: two plain renames
    outputs._rename = lambda src, dst, flags: flags != outputs._EXCHANGE and real_swap(src, dst, flags)
if {at!r} == "removal":
    outputs.remove_output = killed
with outputs.staged_dir(Path({out!r}), "submission", "test.py", True) as stage:
    (stage / "a.png").write_bytes(b"new")
"""


@pytest.mark.parametrize(
    "fallback, at, expected",
    [(False, "rename 1", b"new"), (True, "rename 2", b"old"), (True, "removal", b"new")],
    ids=["after the exchange", "between the fallback's renames", "after the fallback's renames"],
)
def test_a_swap_killed_half_way_is_finished_or_undone_by_the_next_run(tmp_path, fallback, at, expected):
    out = tmp_path / "out"
    with staged_dir(out, "submission", "test.py", False) as stage:
        (stage / "a.png").write_bytes(b"old")
    code = KILLED_SWAP.format(root=str(ROOT), out=str(out), at=at, fallback=fallback)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert swap_journal(out).exists()  # the kill left the swap recorded
    with output_lock(out, "--output_dir"), staged_dir(out, "submission", "test.py", True) as stage:
        (stage / "a.png").write_bytes(b"next")
        assert (out / "a.png").read_bytes() == expected  # finished (the new one) or undone (the earlier one)
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no earlier output kept in a hidden folder, no journal
    assert (out / "a.png").read_bytes() == b"next"


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_exchanged_data_is_json_never_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = [{"image": "a.png", "psnr": 31.123456789012345, "seams": float("nan"), "mask": None}]
    evidence = [np.linspace(0, 1, 7), np.eye(3, dtype=np.float32)]
    back = decode(encode([rows, evidence, None]), 1)
    assert back[0][0]["psnr"] == rows[0]["psnr"] and np.isnan(back[0][0]["seams"]) and back[0][0]["mask"] is None
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(back[1], evidence, strict=True))
    with pytest.raises(UserError, match="process 1 sent something that is not this project's data"):
        decode(pickle.dumps(_Payload()), 1)
    assert not (tmp_path / "PWNED").exists()
    with pytest.raises(TypeError):
        encode(_Payload())


def test_the_swap_journal_is_read_only_when_it_is_ours(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.png").write_bytes(b"mine")
    other = tmp_path / "elsewhere"
    other.mkdir()
    journal = {"stage": "../elsewhere", "old": "../elsewhere.old", "kind": "submission", "new": "x"}
    swap_journal(out).write_text(json.dumps(journal))
    outputs.finish_interrupted_swap(out, "submission")
    assert other.is_dir() and (out / "keep.png").read_bytes() == b"mine" and swap_journal(out).exists()


def test_a_planted_journal_never_removes_what_a_link_reaches(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "photo.jpg").write_bytes(b"a holiday picture")
    out = tmp_path / "out"
    with staged_dir(out, "submission", "test.py", False) as stage:
        (stage / "a.png").write_bytes(b"ours")
    planted = tmp_path / f".out.partial-{'ab' * 16}"
    (planted / "sub").mkdir(parents=True)
    (planted / "sub" / "photo.jpg").write_bytes(b"a holiday picture")
    write_manifest(planted, "submission", "test.py")  # true hashes, as a hostile user could write them
    shutil.rmtree(planted / "sub")
    (planted / "sub").symlink_to(victim)
    new = file_record(out / MANIFEST)["sha256"]
    record = {"stage": planted.name, "old": planted.name + ".old", "kind": "submission", "new": new}
    swap_journal(out).write_text(json.dumps(record))
    with output_lock(out, "--output_dir"):
        outputs.finish_interrupted_swap(out, "submission")
    assert (victim / "photo.jpg").read_bytes() == b"a holiday picture"
    assert (out / "a.png").read_bytes() == b"ours" and not swap_journal(out).exists()


def test_a_planted_journal_never_moves_a_folder_into_the_outputs_place(tmp_path):
    token = "cd" * 16
    aside = tmp_path / f".out.partial-{token}.old"
    aside.mkdir()
    (aside / "evil.txt").write_text("not the project's")
    record = {"stage": f".out.partial-{token}", "old": aside.name, "kind": "submission", "new": "0" * 64}
    swap_journal(tmp_path / "out").write_text(json.dumps(record))
    refused = pytest.raises(UserError, match="was being replaced by a run that was killed; pass --overwrite")
    with refused:
        check_output(Output(tmp_path / "out", "submission", "--output_dir", "test", False))
    with output_lock(tmp_path / "out", "--output_dir"), staged_dir(tmp_path / "out", "submission", "t", True) as s:
        (s / "a.png").write_bytes(b"new")
    assert (aside / "evil.txt").read_text() == "not the project's"  # not ours: neither moved nor removed
    assert sorted(os.listdir(tmp_path / "out")) == [MANIFEST, "a.png"]


@pytest.mark.parametrize("how", ["fifo", "string records", "hard link"])
def test_a_manifest_that_is_no_file_or_no_record_is_refused_without_waiting(tmp_path, how):
    out = tmp_path / "out"
    with staged_dir(out, "submission", "test.py", False) as stage:
        (stage / "a.png").write_bytes(b"ours")
    manifest = out / MANIFEST
    if how == "fifo":
        manifest.unlink()
        os.mkfifo(manifest)  # reading it would wait for a writer forever
    elif how == "string records":
        record = json.loads(manifest.read_text())
        manifest.write_text(json.dumps(record | {"files": {"a.png": "ours, trust me"}}))
    else:
        os.link(manifest, tmp_path / "elsewhere.json")
    with pytest.raises(UserError, match="holds '.*', which this project did not write there"):
        check_output(Output(out, "submission", "--output_dir", "test", True))
    assert (out / "a.png").read_bytes() == b"ours"


def test_a_signal_during_the_swap_waits_until_the_swap_is_done(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with staged_dir(out, "submission", "test.py", False) as stage:
        (stage / "a.png").write_bytes(b"old")
    swap = outputs._swap

    def interrupted(*args):  # Ctrl-C reaches another thread of the process half-way through the swap
        sender = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
        sender.start()
        sender.join()
        time.sleep(0.05)
        swap(*args)

    monkeypatch.setattr(outputs, "_swap", interrupted)
    with pytest.raises(KeyboardInterrupt), staged_dir(out, "submission", "test.py", True) as stage:
        (stage / "a.png").write_bytes(b"new")
    assert (out / "a.png").read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["out"]

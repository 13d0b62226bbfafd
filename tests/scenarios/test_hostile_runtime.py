"""Hostile runtime conditions: worker counts, torchrun peers that never come, many checkpoints, a full disk,
decompression bombs, tiny images, and the helper commands' errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from utils.data.folds import Pair


def _pairs(folder, n: int = 6, size: int = 32) -> list[Pair]:
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n):
        paths = []
        for kind in ("input", "target"):
            path = folder / kind / f"{i:05d}_img_{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            paths.append(path)
        pairs.append(Pair(*paths))
    return pairs


def test_batches_do_not_depend_on_the_number_of_workers(tmp_path):
    from utils.core.distributed import Dist
    from utils.train.config import TrainConfig
    from utils.train.steps import make_loader

    pairs = _pairs(tmp_path)
    cfg = TrainConfig(img_size=32, batch_size=4, steps_per_epoch=3, aug_schedule="1:3")
    batches = {}
    for workers in (0, 2):
        cfg.num_workers = workers
        batches[workers] = list(make_loader(cfg, pairs, 3, 1, Dist(), torch.device("cpu")))
    assert len(batches[0]) == len(batches[2]) == 3
    for (a_in, a_out), (b_in, b_out) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a_in, b_in) and torch.equal(a_out, b_out)
    # the augmentation does act, and differs per sample and per epoch
    plain = torch.stack([torch.from_numpy(cv2.imread(str(p.input))[..., ::-1].copy()) for p in pairs])
    assert not all(any(torch.equal(x, (p.permute(2, 0, 1).float() / 255)) for p in plain) for x in batches[0][0][0])
    cfg.num_workers = 0
    other_epoch = list(make_loader(cfg, pairs, 3, 2, Dist(), torch.device("cpu")))
    assert not torch.equal(other_epoch[0][0], batches[0][0][0])


def test_fitting_eight_models_is_quick_and_beats_equal_weights(tmp_path):
    import time

    from utils.data.images import read_rgb, to_uint8
    from utils.infer.ensemble import choose_weights, evidence
    from utils.metrics import psnr_uint8

    pairs = _pairs(tmp_path, n=3, size=24)
    sigmas = [0.02, 0.04, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4]  # eight "models", from good to poor
    gen = torch.Generator().manual_seed(0)
    outputs = {}
    for pair in pairs:
        clean = torch.from_numpy(read_rgb(pair.target)).permute(2, 0, 1).float() / 255
        outputs[pair.input.name] = [clean + s * torch.randn(clean.shape, generator=gen) for s in sigmas]
    by_input = {read_rgb(p.input).tobytes(): outputs[p.input.name] for p in pairs}

    def exact(weights):
        scores = []
        for pair in pairs:
            mixed = sum(w * o for w, o in zip(weights, outputs[pair.input.name], strict=True))
            scores.append(psnr_uint8(to_uint8(mixed), read_rgb(pair.target)))
        return float(np.mean(scores))

    start = time.perf_counter()
    fit = choose_weights(evidence(lambda rgb: by_input[rgb.tobytes()], pairs, len(sigmas), progress=False), len(sigmas))
    seconds = time.perf_counter() - start
    assert seconds < 2, seconds
    assert len(fit.weights) == 8 and sum(fit.weights) == pytest.approx(1) and min(fit.weights) >= 0
    uniform = exact([1 / 8] * 8)
    assert exact(fit.weights) > uniform + 1  # the poor models are weighed down
    assert fit.psnr == pytest.approx(exact(fit.weights), abs=0.05)  # the estimate is close to the real score
    assert fit.weights[0] > fit.weights[-1]


# --- torchrun: a mis-set environment, peers that never come, signals while waiting ------------------------------

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "HINET_DIST_TIMEOUT")
BAD_ENV = {
    "rank alone": ({"RANK": "0"}, r"RANK is set but WORLD_SIZE is not"),
    "world size alone": ({"WORLD_SIZE": "2"}, r"WORLD_SIZE is set but RANK is not"),
    "no master": ({"RANK": "0", "WORLD_SIZE": "2"}, r"MASTER_ADDR and MASTER_PORT are not"),
    "no port": ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "localhost"}, r"MASTER_PORT is not"),
    "rank not a number": ({"RANK": "zero", "WORLD_SIZE": "2"}, r"RANK='zero' is not a whole number"),
    "rank too high": ({"RANK": "2", "WORLD_SIZE": "2"}, r"RANK=2 is not below WORLD_SIZE=2"),
    "bad port": ({"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "x", "MASTER_PORT": "99999"}, r"not a port number"),
    "bad timeout": ({"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "x", "MASTER_PORT": "1", "HINET_DIST_TIMEOUT": "-3"},
                    r"HINET_DIST_TIMEOUT='-3' is not a positive number of seconds"),
}  # fmt: skip


@pytest.fixture
def torchrun_env(monkeypatch):
    """A clean torchrun environment to set up; the module's timed-out flag is restored afterwards."""
    from utils.core import distributed

    for name in (*TORCHRUN_VARS, "HINET_RENDEZVOUS_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_abandoned", False)
    monkeypatch.setattr("utils.core.cli.RANK_GRACE", 0.01)
    return monkeypatch


def test_under_torchrun_a_mistake_is_printed_once(torchrun_env, capsys):
    """Rank 0 prints it; rank 1 stays silent when torchrun stops it (SIGTERM) within the grace time, and prints
    its own mistake when nothing stops it."""
    import time

    from utils.core import cli
    from utils.core.errors import fail

    def mistake(argv):
        fail("checkpoint nope.pth does not exist.")

    real_sleep = time.sleep

    for rank, stopped, printed in [("0", False, True), ("1", True, False), ("1", False, True)]:
        torchrun_env.setenv("RANK", rank)
        if stopped:
            torchrun_env.setattr(cli.time, "sleep", lambda s: (_ for _ in ()).throw(KeyboardInterrupt))
        else:
            torchrun_env.setattr(cli.time, "sleep", real_sleep)
        assert cli.run_cli(mistake, []) == 2
        assert capsys.readouterr().err.count("error: checkpoint nope.pth") == int(printed), (rank, stopped)


@pytest.mark.parametrize("case", list(BAD_ENV))
def test_a_mis_set_torchrun_environment_is_one_sentence(torchrun_env, capsys, case):
    import re

    import main as train_script
    from conftest import run_cli

    env, message = BAD_ENV[case]
    for name, value in env.items():
        torchrun_env.setenv(name, value)
    code, _, err = run_cli(train_script, ["--device", "cpu", "--data_path", "nowhere"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    assert re.search(message, err), err


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _waiting_rank_zero(env) -> None:
    """Rank 0 of two, whose partner never starts."""
    env.setenv("RANK", "0")
    env.setenv("WORLD_SIZE", "2")
    env.setenv("MASTER_ADDR", "127.0.0.1")
    env.setenv("MASTER_PORT", str(_free_port()))


@pytest.mark.parametrize("store", ["own", "launcher's"])
def test_joining_peers_that_never_come_times_out(torchrun_env, capsys, store):
    import os
    import time

    import torch.distributed as dist

    from utils.core.cli import run_cli
    from utils.core.distributed import init_distributed

    _waiting_rank_zero(torchrun_env)
    torchrun_env.setenv("HINET_RENDEZVOUS_TIMEOUT", "1")
    launcher = None
    if store == "launcher's":  # as under torchrun: its agent serves the store, every process is a client
        port = int(os.environ["MASTER_PORT"])
        launcher = dist.TCPStore("127.0.0.1", port, 2, is_master=True, wait_for_workers=False, multi_tenant=True)
        torchrun_env.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    start = time.monotonic()
    code = run_cli(lambda argv: init_distributed("cpu"))
    err = capsys.readouterr().err
    assert time.monotonic() - start < 6
    assert code == 2 and err.count("\n") == 1, err
    assert "process 0 of 2 could not join the others" in err and "HINET_RENDEZVOUS_TIMEOUT" in err
    assert ("1 of the 2 processes arrived" in err) == (launcher is not None), err


def _sigterm_soon(seconds: float):
    import os
    import signal
    import threading

    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    return timer


@pytest.fixture
def sigterm_ignored_after():
    """A SIGTERM that arrives after the CLI returned must not end pytest."""
    import signal

    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_ends_the_wait_for_peers_at_once(torchrun_env, capsys, sigterm_ignored_after):
    import threading
    import time

    from utils.core.cli import run_cli
    from utils.core.distributed import init_distributed

    _waiting_rank_zero(torchrun_env)
    torchrun_env.setenv("HINET_RENDEZVOUS_TIMEOUT", "2")
    timer = _sigterm_soon(0.3)
    start = time.monotonic()
    code = run_cli(lambda argv: init_distributed("cpu"))
    seconds = time.monotonic() - start
    timer.cancel()
    for thread in threading.enumerate():  # the abandoned wait ends by its limit, not while the interpreter exits
        if thread.name == "hinet-dist-join":
            thread.join(10)
    assert code == 130 and seconds < 1.5, seconds
    assert "interrupted" in capsys.readouterr().err


class _PendingWork:
    """Collective work that the other processes never complete."""

    def is_completed(self) -> bool:
        return False

    def wait(self) -> None:
        raise AssertionError("not reached")


class _FailedWork:
    def is_completed(self) -> bool:
        return True

    def wait(self) -> None:
        raise RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4711")


def test_a_barrier_times_out_obeys_sigterm_and_reports_a_lost_peer(torchrun_env, capsys, sigterm_ignored_after):
    import time

    import torch.distributed as dist

    from utils.core import distributed
    from utils.core.cli import run_cli

    d = distributed.Dist(rank=1, world=2, backend="gloo")
    torchrun_env.setattr(dist, "barrier", lambda **kwargs: _PendingWork())
    torchrun_env.setenv("HINET_DIST_TIMEOUT", "0.2")
    start = time.monotonic()
    code = run_cli(lambda argv: distributed.barrier(d))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and 0.2 < time.monotonic() - start < 2, err
    assert "did not answer while waiting at a barrier (no answer in 0.2 s)" in err and "--resume" in err
    assert distributed._abandoned  # the group is not torn down over unfinished work
    distributed.close(d)

    torchrun_env.setattr(distributed, "_abandoned", False)
    torchrun_env.setenv("HINET_DIST_TIMEOUT", "60")
    timer = _sigterm_soon(0.3)
    start = time.monotonic()
    assert run_cli(lambda argv: distributed.barrier(d)) == 130 and time.monotonic() - start < 2
    timer.cancel()

    torchrun_env.setattr(dist, "broadcast", lambda tensor, src, async_op: _FailedWork())
    code = run_cli(lambda argv: distributed.broadcast_flag(True, d, torch.device("cpu")))
    err = capsys.readouterr().err
    assert code == 2 and "waiting for rank 0 to validate the epoch (" in err and "Connection closed by peer" in err


# --- a full disk -------------------------------------------------------------------------------------------------


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("error", ["ENOSPC", "torch writer"])
def test_a_full_disk_while_saving_a_checkpoint_is_one_sentence(tmp_path, monkeypatch, error):
    from models.checkpoint import save_checkpoint
    from utils.core.errors import UserError

    path = tmp_path / "last.pth"
    save_checkpoint({"epoch": 1}, path)

    def torch_writer(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0")

    monkeypatch.setattr(torch, "save", _disk_full if error == "ENOSPC" else torch_writer)
    with pytest.raises(UserError) as info:
        save_checkpoint({"epoch": 2}, path, "continue with --resume")
    message = str(info.value)
    expected = "the disk is full" if error == "ENOSPC" else "the checkpoint writer failed, most likely for lack of disk"
    assert message.startswith(f"could not write {path}") and expected in message, message
    assert message.endswith("then continue with --resume.")
    assert torch.load(path, weights_only=True) == {"epoch": 1} and not _leftovers(tmp_path)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """Three 48x48 training pairs (folds of 3) and their 32-pixel patches for fold 0: a training run of seconds."""
    import make_patch

    root = tmp_path_factory.mktemp("tiny") / "data"
    src = root / "train_original"
    rng = np.random.default_rng(0)
    rows = ["img_id,input_img,label_img"]
    for i in range(3):
        clean = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
        noisy = np.clip(clean.astype(int) + rng.integers(-40, 41, clean.shape), 0, 255).astype(np.uint8)
        for kind, img in (("input", noisy), ("label", clean)):
            (src / f"train_{kind}_img").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(src / f"train_{kind}_img" / f"train_{kind}_{i}.png"), img)
        rows.append(f"{i},train_input_{i}.png,train_label_{i}.png")
    (src / "train.csv").write_text("\n".join(rows) + "\n")
    make_patch.main([str(a) for a in [
        "--img_size", 32, "--stride", 16, "--resize", 32, "--folds", 3, "--valid_fold", 0, "--patch_growth_count", 1,
        "--v_threshold", 10, "--process_num", 1, "--no_progress", "--input_path", src / "train_input_img",
        "--target_path", src / "train_label_img", "--csv_path", src, "--save_path", root,
    ]])  # fmt: skip
    return root


def _train_args(data, results, *extra):
    return [
        "--data_path", data, "--model_path", results, "--img_size", 32, "--wf", 4, "--depth", 3, "--batch_size", 2,
        "--pred_batch", 4, "--num_workers", 0, "--steps_per_epoch", 1, "--no_progress", "--pretrained_path", "none",
        *extra,
    ]  # fmt: skip


def test_a_full_disk_while_training_keeps_metrics_whole(tiny_data, tmp_path, capsys, monkeypatch):
    import csv

    import main as train_script
    from conftest import run_cli
    from utils.core import tables

    class FillsUp(csv.DictWriter):
        def writerows(self, rows):
            rows = list(rows)
            if len(rows) > 1:  # the second epoch's table finds the disk full
                _disk_full()
            super().writerows(rows)

    monkeypatch.setattr(tables.csv, "DictWriter", FillsUp)
    code, _, err = run_cli(train_script, _train_args(tiny_data, tmp_path, "--epochs", 2), capsys)
    run = tmp_path / "001"
    assert code == 2 and "Traceback" not in err and err.splitlines()[-1].startswith("error: "), err  # after the log
    assert f"could not write {run / 'metrics.csv'}: the disk is full" in err
    assert f"continue with --resume ({run / 'last.pth'} keeps epoch 1)" in err
    with open(run / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1"]  # the earlier table, whole
    assert torch.load(run / "last.pth", weights_only=True)["epoch"] == 1 and not _leftovers(run)


def _tiny_checkpoint(path) -> None:
    from conftest import tiny_model

    model = tiny_model()
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict()}, path)


def test_tiny_images_are_scored_and_a_full_disk_is_one_sentence(tmp_path, capsys, monkeypatch):
    import csv

    from conftest import load_script, run_cli
    from utils.core import tables

    test_script = load_script("test")
    _tiny_checkpoint(tmp_path / "m.pth")
    rng = np.random.default_rng(1)
    for folder, name in (("in", "test_input_1.png"), ("in", "test_input_2.png"), ("clean", "test_label_1.png"),
                         ("clean", "test_label_2.png")):  # fmt: skip
        (tmp_path / folder).mkdir(exist_ok=True)
        size = (5, 6) if name.endswith("1.png") else (2, 9)  # both smaller than SSIM's 11-pixel window
        cv2.imwrite(str(tmp_path / folder / name), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    args = ["--weights", tmp_path / "m.pth", "--tile_sizes", 8, "--strides", 4, "--input_dir", tmp_path / "in",
            "--eval_dir", tmp_path / "clean", "--no_progress", "--no_zip"]  # fmt: skip
    code, out, err = run_cli(test_script, [*args, "--output_dir", tmp_path / "out"], capsys)
    assert code == 0, err
    with open(tmp_path / "out" / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["image"] for r in rows] == ["test_input_1.png", "test_input_2.png", "mean"]
    assert all(-1 <= float(r[k]) <= 1 for r in rows for k in ("ssim_input", "ssim_ensemble"))

    monkeypatch.setattr(tables.csv, "DictWriter", lambda *a, **k: _disk_full())
    code, _, err = run_cli(test_script, [*args, "--output_dir", tmp_path / "full"], capsys)
    assert code == 2 and err.count("\n") == 1, err
    assert f"could not write {(tmp_path / 'full').resolve() / 'metrics.csv'}: the disk is full" in err
    assert not (tmp_path / "full").exists()  # the staged outputs never replaced anything


# --- decompression bombs -----------------------------------------------------------------------------------------


def _png_header(path, width: int, height: int) -> None:
    """A PNG that declares its size and holds no pixels: what a decompression bomb's header looks like."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)


def _jpeg_header(path, width: int, height: int) -> None:
    import struct

    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    path.write_bytes(b"\xff\xd8" + app0 + sof + b"\xff\xd9")


def test_images_declaring_too_many_pixels_are_refused_before_decoding(tmp_path, capsys, monkeypatch):
    import cv2 as cv

    from conftest import load_script, run_cli
    from utils.core.errors import UserError
    from utils.data.images import header_size, inspect_image, read_bgr

    def no_decoding(*args, **kwargs):
        raise AssertionError("a bomb was decoded")

    bombs = tmp_path / "bombs"
    bombs.mkdir()
    _png_header(bombs / "a.png", 50_000, 40_000)
    _jpeg_header(bombs / "b.jpg", 30_000, 30_000)
    assert header_size(bombs / "b.jpg") == (30_000, 30_000)
    monkeypatch.setattr(cv, "imread", no_decoding)
    for name, size in (("a.png", "50000x40000"), ("b.jpg", "30000x30000")):
        with pytest.raises(UserError, match=rf"declares {size} pixels, more than the limit of 268,435,456"):
            read_bgr(bombs / name)
        declared, problem = inspect_image(bombs / name)
        assert "decompression bomb" in problem and "HINET_MAX_IMAGE_PIXELS" in problem
    _tiny_checkpoint(tmp_path / "m.pth")
    argv = ["--weights", tmp_path / "m.pth", "--tile_sizes", 8, "--input_dir", bombs, "--output_dir", tmp_path / "o"]
    code, _, err = run_cli(load_script("test"), argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "2 input image(s) cannot be used" in err and "declares" in err, err

    monkeypatch.undo()  # the limit is stated, and can be changed
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 30, 3), np.uint8))
    monkeypatch.setenv("HINET_MAX_IMAGE_PIXELS", "599")
    with pytest.raises(UserError, match="30x20 pixels, more than the limit of 599"):
        read_bgr(small)
    monkeypatch.setenv("HINET_MAX_IMAGE_PIXELS", "600")
    assert read_bgr(small).shape == (20, 30, 3)


# --- the helper commands -----------------------------------------------------------------------------------------


def test_every_helper_command_runs_through_run_cli():
    import ast

    from conftest import ROOT

    for path in sorted([*(ROOT / "scripts").glob("*.py"), *(ROOT / "bench").glob("*.py")]):
        tree = ast.parse(path.read_text())
        if not any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            continue
        guards = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
        assert guards and "sys.exit(run_cli(" in ast.unparse(guards[0]).replace(
            "code = run_cli(", "sys.exit(run_cli("
        ), path


def test_bench_gpu_user_errors_are_one_sentence(tmp_path, capsys, monkeypatch):
    import runpy
    import sys

    cases = [
        (["--device", "cpu", "--skip", "inference,nope"], "--skip names an unknown section 'nope'"),
        (["--device", "cpu", "--demo", tmp_path / "nowhere"], "run `make demo` first"),
        (["--device", "cpu", "--out", __file__], "is a file, not a folder"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available here"))
    for argv, message in cases:
        monkeypatch.setattr(sys, "argv", ["bench_gpu.py", *map(str, argv)])
        with pytest.raises(SystemExit) as info:
            runpy.run_module("bench.bench_gpu", run_name="__main__")
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and message in err, err

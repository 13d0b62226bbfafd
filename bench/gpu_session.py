"""One run on a lent GPU machine, sized for its time limit: the GPU starter's data is made on the CPU cores while
the GPU is measured, then the loader is measured on that data, then the starter trains in the time that is left.

    python -m bench.gpu_session --out OUT --minutes 9             # on the GPU machine
    python -m bench.gpu_session --out OUT --quick --device cpu    # every step with tiny sizes, on a CPU

Everything goes to OUT, an empty or new folder, as it is measured: ``gpu_report.json`` and ``.md`` (the sections
of bench.bench_gpu and the starter's schedule), ``session.log`` (each command and its output, test.py's scores of
the starter among them) and the packed starter, in parts of at most 15 MiB where it is larger (``cat
starter.pth.part* > starter.pth``). A step that fails is logged and the run goes on; a sweep variant that would
start after its deadline is left out and commands are stopped at the deadline, so a run cut short keeps what it
measured. Stopped itself (Ctrl-C, SIGTERM), it stops the commands it started.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import bench_gpu
from bench.bench_gpu import Report, TrainBench
from models.checkpoint import pack_checkpoint
from scripts.starter import PROFILES, commands, starter_card
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.data.folds import patch_pairs, read_fold_csv
from utils.data.layout import FOLD_CSV
from utils.presets import PRESETS, preset_flags

PRESET = PROFILES["gpu"]
PART = 15 * 2**20  # the largest file a GPU machine hands back is 16 MiB
STOP_WAIT = 20  # seconds a command stopped at the deadline has to save and clean up before it is killed


@dataclass(frozen=True)
class Plan:
    """What the run measures and trains: the full sizes on a GPU, or tiny ones that check every step on a CPU."""

    wf: int = 64  # the contest model of the speed tables
    depth: int = 5
    image: tuple[int, int] = (2448, 3264)
    specs: tuple = ((256, 64, 16, 0.4), (352, 96, 32, 0.6))
    bench_steps: int = 20
    table_batch: int = 16  # the speed table's batch and patch size (the contest's)
    table_size: int = 256
    loader_steps: int = 100  # more batches than the loader's workers fetch ahead (2 each), or it is never the limit
    loader_workers: tuple[int, ...] = (2, 8, 16)
    data_seconds: float = 240  # the GPU measurements that run beside the data end by then
    reserve: float = 45  # seconds kept after training: packing, scoring
    changes: tuple = ()  # (script, setting, value) in place of the preset's


QUICK = Plan(
    wf=4, depth=3, image=(120, 150), specs=((64, 16, 16, 0.4), (96, 24, 32, 0.6)), bench_steps=2, loader_steps=4,
    table_batch=2, table_size=64, loader_workers=(0,), data_seconds=60, reserve=20,
    changes=(("scripts.flare_data", "train_count", 8), ("scripts.flare_data", "test_count", 2),
             ("scripts.flare_data", "height", 576), ("scripts.flare_data", "width", 768),
             ("scripts.flare_data", "psf_count", 4), ("make_patch.py", "folds", 4), ("main.py", "wf", 4),
             ("main.py", "depth", 3), ("main.py", "batch_size", 2), ("main.py", "num_workers", 0),
             ("main.py", "epochs", 2), ("main.py", "amp", False)),
)  # fmt: skip


class Session:
    """The run's clock, log and report."""

    def __init__(self, out: Path, minutes: float, device: torch.device) -> None:
        self.start, self.deadline = time.time(), time.time() + 60 * minutes
        self.device, self.out, self.log = device, out, out / "session.log"
        self.children: set[subprocess.Popen] = set()  # the commands running now, stopped with the session
        self.stopping = threading.Event()
        self.report = Report(out)
        self.report.section("environment", bench_gpu.environment(device))

    def left(self) -> float:
        return self.deadline - time.time()

    def note(self, text: str) -> None:
        line = f"[{time.time() - self.start:6.1f} s] {text}"
        print(line, flush=True)
        with self.log.open("a") as fh:
            fh.write(line + "\n")

    def step(self, name: str, fn, *args):
        """Run one step; a failure is logged with its traceback and the run goes on."""
        self.note(f"{name}: start")
        try:
            result = fn(*args)
        except Exception:  # the run must keep what the other steps measure
            self.note(f"{name}: FAILED\n{traceback.format_exc()}")
            return None
        self.note(f"{name}: done")
        return result

    def command(self, cmd: list[str], seconds: float) -> int:
        """Run a command with its output in the log; past ``seconds`` it is asked to stop (SIGTERM), then killed."""
        if self.stopping.is_set():
            return -signal.SIGTERM
        self.note("$ " + shlex.join("python" if c == sys.executable else str(c) for c in cmd))
        with self.log.open("a") as fh:
            child = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            self.children.add(child)
            try:
                return child.wait(timeout=max(seconds, 1))
            except subprocess.TimeoutExpired:
                self.note(f"stopped at its time limit ({max(seconds, 1):.0f} s)")
                return stop(child)
            finally:
                self.children.discard(child)

    def stop_all(self) -> None:
        """Stop the commands still running (the session was stopped) and start no more."""
        self.stopping.set()
        for child in list(self.children):
            stop(child)


def stop(child: subprocess.Popen) -> int:
    """SIGTERM to the command (the project's scripts stop their own workers on it), then its whole group killed."""
    child.terminate()
    try:
        return child.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        return child.wait()


def changes_of(plan: Plan, cores: int) -> dict[str, dict]:
    """Script -> settings in place of the preset's: the plan's, and the data's workers from the machine's cores
    (some kept free for the GPU measurements that run beside them)."""
    workers = max(1, min(cores, 16) - 4)
    changes: dict[str, dict] = {"scripts.flare_data": {"workers": workers}, "make_patch.py": {"process_num": workers}}
    for script, name, value in plan.changes:
        changes.setdefault(script, {})[name] = value
    return changes


def schedule(rate: float, seconds: float, batch: int, epochs: int) -> tuple[int, int]:
    """(epochs, steps per epoch) that train at ``rate`` samples a second for about ``seconds``. main.py trains at
    about 0.65 of the measured step's rate (its near-light and clean-region losses, validation, start-up: 460 to
    595 samples a second against 779 on an H200), so 0.55 of it is planned."""
    steps = int(rate * seconds * 0.55 / batch)
    epochs = max(1, min(epochs, steps // 20))  # at least 20 steps an epoch
    return epochs, max(1, steps // epochs)


def patches(root: Path) -> list:
    """The training patches make_patch.py cut (fold 0 validates), for the loader's measurement."""
    fold = root / "train" / "10Folds" / "0" / "resize256"
    return patch_pairs(fold / "input", fold / "target", read_fold_csv(root / "train_original" / FOLD_CSV), 0)


def parts(path: Path) -> list[Path]:
    """``path`` as it is, or cut into files of at most ``PART`` bytes (``path.part00``, ...) and removed."""
    data = path.read_bytes()
    if len(data) <= PART:
        return [path]
    pieces = [path.with_name(f"{path.name}.part{i:02d}") for i in range(0, (len(data) + PART - 1) // PART)]
    for i, piece in enumerate(pieces):  # part00, part01, ...: in order for the shell's *
        piece.write_bytes(data[i * PART : (i + 1) * PART])
    path.unlink()
    return pieces


def measure_gpu(s: Session, plan: Plan) -> None:
    """What runs beside the data: correctness, training from memory, the inference sweep, the whole image."""
    values, rows = bench_gpu.correctness(s.device, plan.wf, plan.depth, 256 if plan.wf == 64 else 32)
    s.report.section("correctness", values, rows, ("comparison", "max abs diff", "PSNR dB"))
    table = TrainBench(plan.wf, plan.depth, plan.table_batch, plan.table_size, plan.bench_steps)
    s.step("training from memory", bench_gpu.training, s.device, table, s.report)
    sweep_until = min(s.start + plan.data_seconds - 30, s.deadline)
    s.step("inference sweep", bench_gpu.sweep, s.device, plan.wf, plan.depth, plan.image, plan.specs, s.report,
           sweep_until)  # fmt: skip
    s.step("whole image", bench_gpu.whole_image, s.device, plan.wf, plan.depth, plan.image, plan.specs, s.report)
    if time.time() < sweep_until - 60 and s.device.type == "cuda":  # compiling a training step takes a minute or more
        compiled = TrainBench(plan.wf, plan.depth, plan.table_batch, plan.table_size, plan.bench_steps, ("bf16",),
                              memory=False, compile=True)  # fmt: skip
        s.step("training compiled", bench_gpu.training, s.device, compiled, s.report)


def train_starter(s: Session, plan: Plan, root: Path, changes: dict[str, dict]) -> Path | None:
    """The loader on the real patches, then main.py in the time left; returns the best checkpoint."""
    pairs = patches(root)
    table = TrainBench(plan.wf, plan.depth, plan.table_batch, plan.table_size, plan.loader_steps, memory=False,
                       workers=plan.loader_workers)  # fmt: skip
    s.step("training through the loader", bench_gpu.training, s.device, table, s.report, pairs)
    training = PRESETS[PRESET].training | changes.get("main.py", {})
    workers = training["num_workers"]
    own = TrainBench(training["wf"], training["depth"], training["batch_size"], plan.table_size,
                     plan.loader_steps, memory=False, workers=(workers,))  # fmt: skip
    rates = s.step("the starter's rate", bench_gpu.training, s.device, own, s.report, pairs) or {}
    seconds = s.left() - plan.reserve
    if not rates or seconds < 30:
        s.note(f"no time or rate to train the starter ({seconds:.0f} s left)")
        return None
    rate = next(iter(rates.values()))
    epochs, steps = schedule(rate, seconds, training["batch_size"], training["epochs"])
    run = {"epochs": epochs, "steps_per_epoch": steps}
    s.report.section("starter schedule", {"rate_samples_per_s": rate, "seconds": seconds, **run})
    changes["main.py"] = changes.get("main.py", {}) | run  # the card records what ran
    code = s.command(commands(PRESET, root, str(s.device), changes)[2], s.left() - plan.reserve / 2)
    s.note(f"main.py exit status {code}")
    best = root / "runs" / "001" / "256_best.pth"
    return best if best.is_file() else None


def pack_and_score(s: Session, root: Path, best: Path, changes: dict[str, dict], minutes: float) -> None:
    """The best checkpoint packed as ``scripts.starter`` packs it, into OUT; test.py's scores on the held-out pairs."""
    packed = s.out / "starter.pth"
    pack_checkpoint(best, packed, starter_card("gpu", minutes, changes))
    s.note("packed: " + ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in parts(packed)))
    where = {"weights": (best,), "input_dir": root / "test_input_img", "eval_dir": root / "test_label_img",
             "output_dir": root / "eval", "device": str(s.device), "make_zip": False, "overwrite": True,
             "progress": False}  # fmt: skip
    s.command([sys.executable, "test.py", *preset_flags(PRESET, "test.py", where)], max(s.left(), 10))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder of the report, the log and the packed starter")
    p.add_argument("--work", default="data/gpu_session", help="the starter's data, patches and run")
    p.add_argument("--minutes", type=float, default=9.0, help="the run ends by then (default 9)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--quick", action="store_true", help="tiny sizes: every step, minutes on a CPU")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One sentence for a run that cannot start: no time, no GPU, or an --out that holds an earlier run."""
    if not args.minutes > 0:
        fail(f"--minutes {args.minutes} leaves no time to run; give the minutes the run may take, e.g. 9.")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda was asked for but CUDA is not available here; use --device cpu (with --quick).")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"--out {out} is not an empty folder; give a new one, so that no earlier report or starter is mixed in.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_args(args)
    plan, root = QUICK if args.quick else Plan(), Path(args.work)
    s = Session(Path(args.out), args.minutes, torch.device(args.device))
    try:
        return run(s, plan, root, args.device)
    finally:
        s.stop_all()


def run(s: Session, plan: Plan, root: Path, device: str) -> int:
    """The steps in order; 0 when a starter was trained and packed."""
    changes = changes_of(plan, os.cpu_count() or 2)
    data_steps = commands(PRESET, root, device, changes)[:2]
    data_result: list[int] = []

    def make_data() -> None:
        for cmd in data_steps:
            data_result.append(s.command(cmd, s.left()))
            if data_result[-1] != 0:
                return

    data = threading.Thread(target=make_data)
    data.start()
    measure_gpu(s, plan)
    data.join(timeout=max(s.left() - plan.reserve - 60, 0))
    s.note(f"data: exit statuses {data_result}")
    if data.is_alive() or data_result != [0, 0]:
        s.note("no data to train on; the run ends with what it measured")
        return 1
    best = s.step("the starter", train_starter, s, plan, root, changes)
    if best is not None:
        s.step("packing and scores", pack_and_score, s, root, best, changes, (time.time() - s.start) / 60)
    s.report.section("run", {"seconds": round(time.time() - s.start, 1)})
    if best is None:
        s.note("no starter was trained")
    return 0 if best is not None else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))

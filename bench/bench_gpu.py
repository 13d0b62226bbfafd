"""GPU report: the CUDA path checked against the CPU, then inference and training speed and memory.

    python -m bench.bench_gpu [--quick] [--device cuda|cpu] [--out DIR] [--demo DIR]

Writes ``DIR/gpu_report.json`` and ``DIR/gpu_report.md`` after every section, so a run cut
short still leaves what it measured. ``--quick --device cpu`` runs every section with tiny
models and images, to catch mistakes before GPU time is spent.

1. correctness: HINet on the device against the CPU in fp32 (TF32 off), and bf16/fp16
   autocast against fp32 (PSNR);
2. inference: the default ensemble (width 64, depth 5; 256/64 and 352/96 stride-aware
   tiles) on one 2448x3264 image: a port of the original loop, then the project in fp32,
   TF32 and bf16, each with and without ``cudnn.benchmark``, optionally ``torch.compile``;
3. end to end: ``test.py``'s own path on three such images, fp32 and ``--amp``;
4. training: samples per second at width 64, depth 5, batch 16 of 256x256, fp32, TF32 and
   bf16, from tensors in memory and through the real loader with several worker counts;
5. accuracy on the demo's checkpoints (``--demo ROOT``: a folder after ``make demo``, with
   ``weights/`` and ``data/test_*_img/``): ensemble PSNR per precision;
6. ``torch.compile`` of the bf16 ensemble: compile time and steady-state time.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.bench_inference import original_loop, synthetic_image
from bench.common import table
from models.hinet import HINet
from models.local_norm import use_local_stats
from utils.core.cli import run_cli
from utils.core.errors import fail, reported_write
from utils.core.runtime import set_tf32
from utils.core.tiling import Tiling, count_tiles, gather_tiles, restore_image, tile_starts
from utils.data.augment import build_augmentation
from utils.data.datasets import PatchDataset
from utils.data.folds import Pair
from utils.data.images import to_uint8
from utils.infer.options import InferenceOptions, ModelSpec
from utils.infer.restore import Model, restore
from utils.infer.restorer import Restorer
from utils.metrics import psnr_uint8
from utils.train.losses import RestorationLoss

SECTIONS = ("correctness", "inference", "end_to_end", "training", "demo", "compile", "sweep", "whole_image")
CONTEST_PATCHES = 67_065  # training patches of size 256 on the contest data
VALIDATION = (62, 2448, 3264)  # fold-0 validation images and their size


class Report:
    """Sections of tables and figures, written to JSON and Markdown after every change."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.data: dict = {}
        self.md: dict[str, list[str]] = {}
        self.rows: dict[str, list[tuple]] = {}  # sections that grow over several calls (training)
        if out.exists() and not out.is_dir():
            fail(f"--out {out} is a file, not a folder; choose another --out.")
        with reported_write(out):
            out.mkdir(parents=True, exist_ok=True)

    def section(self, name: str, values: dict, rows: list[tuple] | None = None, header: tuple = ()) -> None:
        """Add (or, measured further, replace) a section and rewrite both files."""
        self.data[name] = values
        md = [f"## {name}", ""]
        if rows:
            md += [
                "| " + " | ".join(header) + " |",
                "|" + "---|" * len(header),
                *("| " + " | ".join(str(x) for x in r) + " |" for r in rows),
                "",
            ]
            print(f"\n{name}\n" + table(rows, header), flush=True)
        self.md[name] = md + [f"- {k}: {v}" for k, v in values.items() if not isinstance(v, (list, dict))] + [""]
        with reported_write(self.out / "gpu_report.json"):
            (self.out / "gpu_report.json").write_text(json.dumps(self.data, indent=1) + "\n")
        body = "\n".join(line for lines in self.md.values() for line in lines)
        with reported_write(self.out / "gpu_report.md"):
            (self.out / "gpu_report.md").write_text("# GPU report\n\n" + body + "\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


@contextmanager
def cuda_settings(tf32: bool, benchmark: bool):
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = benchmark
    set_tf32(tf32)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old
        set_tf32(False)


def psnr_float(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.float() - b.float()) ** 2).item()
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def environment(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "gpu": props.name,
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
        }
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def correctness(device: torch.device, wf: int, depth: int, size: int) -> tuple[dict, list[tuple]]:
    """Device fp32 against CPU fp32 (TF32 off), and autocast precisions against device fp32."""
    torch.manual_seed(0)
    model = HINet(wf=wf, depth=depth).eval()
    image = synthetic_image(size, size, seed=1)[None]
    with torch.inference_mode():
        cpu = model(image)[1]
        model_d = model.to(device)
        with cuda_settings(tf32=False, benchmark=False):
            fp32 = model_d(image.to(device))[1].float().cpu()
        rows = [("fp32 (TF32 off) vs CPU", f"{(fp32 - cpu).abs().max().item():.2e}", f"{psnr_float(fp32, cpu):.1f}")]
        values = {"fp32_vs_cpu_max_abs": (fp32 - cpu).abs().max().item()}
        for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
            try:
                with torch.autocast(device.type, dtype=dtype):
                    out = model_d(image.to(device))[1].float().cpu()
            except RuntimeError as err:  # a CPU without fp16 kernels
                rows.append((f"{name} autocast vs fp32", "n/a", str(err).splitlines()[0][:60]))
                continue
            values[f"{name}_psnr_vs_fp32"] = psnr_float(out, fp32)
            rows.append(
                (f"{name} autocast vs fp32", f"{(out - fp32).abs().max().item():.2e}", f"{psnr_float(out, fp32):.1f}")
            )
        with cuda_settings(tf32=True, benchmark=False):
            tf32 = model_d(image.to(device))[1].float().cpu()
        values["tf32_psnr_vs_fp32"] = psnr_float(tf32, fp32)
        rows.append(("TF32 vs fp32", f"{(tf32 - fp32).abs().max().item():.2e}", f"{psnr_float(tf32, fp32):.1f}"))
    return values, rows


def random_models(wf: int, depth: int, device: torch.device, count: int = 2) -> list[HINet]:
    """Seeded random HINets: speed does not depend on the weights."""
    models = []
    for seed in range(count):
        torch.manual_seed(seed)
        models.append(HINet(wf=wf, depth=depth).eval().to(device))
    return models


def ensemble(restorers, image, specs, mode="stride_aware") -> torch.Tensor:
    """0.4/0.6 ensemble of the two tile sizes, restored as test.py restores (``utils.infer.restore.restore``)."""
    models = [
        Model(ModelSpec(Path(f"{t}.pth"), t, s, b, w), r) for r, (t, s, b, w) in zip(restorers, specs, strict=True)
    ]
    return restore(image, models, InferenceOptions(tile_mode=mode, progress=False))


def inference(device: torch.device, wf: int, depth: int, hw: tuple[int, int], specs) -> tuple[dict, list[tuple]]:
    """Seconds per image of the default ensemble in each precision and cuDNN setting."""
    image = synthetic_image(*hw, seed=2).to(device)
    models = random_models(wf, depth, device)
    tiles = sum(count_tiles(*hw, t, s, "stride_aware") for t, s, _, _ in specs)
    rows, values, outputs = [], {"tiles_per_image": tiles}, {}

    def run_original():
        with torch.no_grad():
            return sum(w * original_loop(m, image, t, s, b) for m, (t, s, b, w) in zip(models, specs, strict=True))

    with cuda_settings(tf32=False, benchmark=False):
        reset_peak(device)
        seconds = timed(run_original, device)
    rows.append(
        (
            "original loop (fp32, TF32 off)",
            "off",
            f"{seconds:.2f}",
            f"{tiles / seconds:.0f}",
            "1.00x",
            "-",
            f"{peak_mib(device):.0f}",
        )
    )
    values["original_seconds"] = seconds
    base = seconds
    benchmarks = (False, True) if device.type == "cuda" else (False,)  # cuDNN settings mean nothing on a CPU
    configs = [(p, b) for p in ("fp32", "tf32", "bf16") for b in benchmarks]
    for precision, benchmark in configs:
        with cuda_settings(tf32=precision == "tf32", benchmark=benchmark):
            restorers = [Restorer(m, device, amp=precision == "bf16") for m in models]
            ensemble(restorers, image[:, :512, :512], specs)  # warm-up: kernels, cuDNN choices
            reset_peak(device)
            key = (precision, benchmark)
            seconds = timed(lambda r=restorers, k=key: outputs.__setitem__(k, ensemble(r, image, specs)), device)
        ref = outputs.get(("fp32", benchmark), outputs[precision, benchmark])
        diff = np.abs(to_uint8(outputs[precision, benchmark]).astype(int) - to_uint8(ref).astype(int)).max()
        name = f"project {PRECISION_NAMES[precision]}"
        rows.append(
            (
                name,
                "on" if benchmark else "off",
                f"{seconds:.2f}",
                f"{tiles / seconds:.0f}",
                f"{base / seconds:.2f}x",
                str(diff),
                f"{peak_mib(device):.0f}",
            )
        )
        values[f"{precision}_benchmark_{'on' if benchmark else 'off'}_seconds"] = seconds
        values[f"{precision}_benchmark_{'on' if benchmark else 'off'}_max_grey_diff_vs_fp32"] = int(diff)
    values["forward_share_bf16"] = forward_share(models, image, specs, device)
    values |= validation_estimate(models[0], image, specs[0][0], device, rows)
    return values, rows


def validation_estimate(model, image, tile: int, device: torch.device, rows: list) -> dict:
    """One validation image as the trainer restores it (tiles of the patch size, stride half, all starts)."""
    values, tiling = {}, Tiling(tile, tile // 2, 32, "all")
    for precision in ("tf32", "bf16"):
        with cuda_settings(tf32=precision == "tf32", benchmark=True):
            restorer = Restorer(model, device, amp=precision == "bf16")
            restore_image(restorer, image[:, :512, :512], tiling)
            seconds = timed(lambda r=restorer: restore_image(r, image, tiling), device)
        pass_seconds = seconds * VALIDATION[0] * (VALIDATION[1] * VALIDATION[2]) / (image.shape[1] * image.shape[2])
        values[f"validation_pass_{precision}_seconds"] = pass_seconds
        rows.append((f"validation pass, {VALIDATION[0]} images, {tile}/{tile // 2} all ({precision})", "on",
                     f"{seconds:.2f}", "", "", "", f"whole pass {pass_seconds / 60:.1f} min"))  # fmt: skip
    return values


def forward_share(models, image, specs, device) -> float:
    """Share of the bf16 tiled path spent in the model's forward passes (same tiles, pre-cut)."""
    with cuda_settings(tf32=False, benchmark=True):
        restorers = [Restorer(m, device, amp=True) for m in models]
        batches = []
        for tile, stride, batch, _ in specs:
            tops, lefts = tile_starts(image.shape[1], tile, stride), tile_starts(image.shape[2], tile, stride)
            pad = torch.nn.functional.pad(
                image, (0, lefts[-1] + tile - image.shape[2], 0, tops[-1] + tile - image.shape[1])
            )
            grid = torch.tensor([(y, x) for y in tops for x in lefts], device=device)
            batches.append([gather_tiles(pad, g[:, 0], g[:, 1], tile) for g in grid.split(batch)])
        forward = timed(lambda: [r(b) for r, bs in zip(restorers, batches, strict=True) for b in bs], device)
        total = timed(lambda: ensemble(restorers, image, specs), device)
    return round(forward / total, 3)


def compiled(device: torch.device, wf: int, depth: int, hw: tuple[int, int], specs) -> tuple[dict, list[tuple]]:
    """bf16 with and without ``torch.compile``: compile time (first image) and the steady-state time."""
    image = synthetic_image(*hw, seed=2).to(device)
    models = random_models(wf, depth, device)
    rows = []
    with cuda_settings(tf32=False, benchmark=True):
        eager = [Restorer(m, device, amp=True) for m in models]
        ensemble(eager, image[:, :512, :512], specs)
        base = timed(lambda: ensemble(eager, image, specs), device)
    rows.append(("project bf16 autocast (eager)", "-", f"{base:.2f}", "1.00x"))
    with cuda_settings(tf32=False, benchmark=True):
        restorers = [Restorer(torch.compile(m), device, amp=True) for m in models]
        try:
            first = timed(lambda: ensemble(restorers, image, specs), device)
            seconds = timed(lambda: ensemble(restorers, image, specs), device)
        except Exception as err:  # report a compiler failure instead of losing the run
            rows.append(("project bf16 + torch.compile", "failed", type(err).__name__, ""))
            return {"compile_error": str(err).splitlines()[0][:200]}, rows
    rows.append(("project bf16 + torch.compile", f"{first:.1f}", f"{seconds:.2f}", f"{base / seconds:.2f}x"))
    return {"eager_seconds": base, "compile_first_image_seconds": first, "compile_seconds": seconds}, rows


# Tiles per pass (256 model, 352 model), channels-last, torch.compile mode: the bf16 variants of the sweep, fastest
# to measure first; test.py's defaults are the first row, and every row is compared with it.
SWEEP = (
    ((16, 32), True, None),
    ((32, 32), True, None),
    ((64, 64), True, None),
    ((128, 128), True, None),
    ((64, 64), False, None),
    ((64, 64), True, "default"),
    ((64, 64), True, "reduce-overhead"),
    ((64, 64), True, "max-autotune-no-cudagraphs"),
)


class GraphSafe:
    """A restorer compiled with CUDA graphs, whose output outlives the next call (graphs reuse their output memory)."""

    def __init__(self, restorer: Restorer) -> None:
        self.restorer = restorer

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        torch.compiler.cudagraph_mark_step_begin()
        return self.restorer(batch).clone()


def sweep_restorers(models, device: torch.device, channels_last: bool, mode: str | None) -> list:
    """bf16 restorers of one sweep variant (compiled afresh: dynamo's cache would hand one mode's graphs to another)."""
    if mode:
        torch._dynamo.reset()
    restorers = []
    for model in models:
        restorer = Restorer(model, device, amp=True, channels_last=channels_last)
        if mode:
            restorer.model = torch.compile(restorer.model, mode=mode)
        restorers.append(GraphSafe(restorer) if mode == "reduce-overhead" else restorer)
    return restorers


def sweep(device: torch.device, wf: int, depth: int, hw: tuple[int, int], specs, report: Report, deadline: float):
    """The bf16 ensemble per variant of ``SWEEP``: the first image (compilation and cuDNN choices included) and the
    next; each row is written as it is measured, and a variant that would start after ``deadline`` is left out."""
    image = synthetic_image(*hw, seed=2).to(device)
    models = random_models(wf, depth, device)
    values = {"tiles_per_image": sum(count_tiles(*hw, t, s, "stride_aware") for t, s, _, _ in specs)}
    rows, reference = [], None
    header = ("tiles per pass", "memory", "compile", "first image s", "s per image", "tiles/s", "grey diff", "peak MiB")
    for batches, channels_last, mode in SWEEP if device.type == "cuda" else SWEEP[:2]:
        name = (f"{batches[0]}+{batches[1]}", "channels-last" if channels_last else "NCHW", mode or "eager")
        if time.time() > deadline:
            values.setdefault("left_out", []).append(" ".join(name))
            continue
        run_specs = [(t, s, b, w) for (t, s, _, w), b in zip(specs, batches, strict=True)]
        out = {}
        with cuda_settings(tf32=False, benchmark=True):
            reset_peak(device)
            try:
                restorers = sweep_restorers(models, device, channels_last, mode)
                first = timed(lambda r=restorers, sp=run_specs: ensemble(r, image, sp), device)
                seconds = timed(
                    lambda r=restorers, sp=run_specs, o=out: o.__setitem__(0, ensemble(r, image, sp)), device
                )
            except Exception as err:  # a compiler failure is a row of the report, not the end of the run
                rows.append((*name, "failed", type(err).__name__, "", "", ""))
                values["_".join(name) + "_error"] = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
                report.section("inference sweep", values, rows, header)
                continue
        restored = to_uint8(out[0])
        reference = restored if reference is None else reference
        diff = int(np.abs(restored.astype(int) - reference.astype(int)).max())
        rows.append((*name, f"{first:.1f}", f"{seconds:.2f}", f"{values['tiles_per_image'] / seconds:.0f}", diff,
                     f"{peak_mib(device):.0f}"))  # fmt: skip
        values["_".join(name) + "_seconds"] = seconds
        values["_".join(name) + "_first_seconds"] = first
        report.section("inference sweep", values, rows, header)


def whole_image(device: torch.device, wf: int, depth: int, hw: tuple[int, int], specs, report: Report) -> None:
    """``--tile_mode full``: each model restores the whole image in one bf16 pass, with and without local HIN
    statistics (TLC, a window of 1.5 training patch sizes); time and peak memory."""
    image = synthetic_image(*hw, seed=2).to(device)
    rows, values = [], {"image": f"{hw[0]}x{hw[1]}"}
    header = ("statistics", "first image s", "s per image", "peak MiB")
    for local in (0.0, 1.5):
        models = random_models(wf, depth, device)
        if local:
            for model, (tile, *_) in zip(models, specs, strict=True):
                use_local_stats(model, round(local * tile))
        with cuda_settings(tf32=False, benchmark=True):
            restorers = [Restorer(m, device, amp=True) for m in models]
            reset_peak(device)
            first = timed(lambda r=restorers: ensemble(r, image, specs, "full"), device)
            seconds = timed(lambda r=restorers: ensemble(r, image, specs, "full"), device)
        name = f"local, window {local}" if local else "whole input"
        rows.append((name, f"{first:.1f}", f"{seconds:.2f}", f"{peak_mib(device):.0f}"))
        values[f"{'local' if local else 'global'}_seconds"] = seconds
        values[f"{'local' if local else 'global'}_peak_mib"] = peak_mib(device)
        report.section("whole image", values, rows, header)


def end_to_end(
    device: torch.device, wf: int, depth: int, hw: tuple[int, int], specs, images: int
) -> tuple[dict, list[tuple]]:
    """test.py's own path (checks, decoding, tiles, ensemble, PNGs, zip) with its defaults, fp32 and --amp."""
    from utils.infer.submission import run_inference

    work = Path(tempfile.mkdtemp(prefix="bench_gpu_e2e_"))
    try:
        (work / "in").mkdir()
        img = (synthetic_image(*hw, seed=3).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        for i in range(images):
            cv2.imwrite(str(work / "in" / f"test_input_{20000 + i}.png"), np.roll(img, 37 * i, axis=1))
        model_specs = []
        for seed, (tile, stride, batch, weight) in enumerate(specs):
            torch.manual_seed(seed)
            model = HINet(wf=wf, depth=depth)
            torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict()}, work / f"{tile}.pth")
            model_specs.append(ModelSpec(work / f"{tile}.pth", tile, stride, batch, weight))
        rows, values = [], {}
        for amp in (False, True):
            reset_peak(device)
            opts = InferenceOptions(amp=amp, progress=False)
            summary = run_inference(model_specs, work / "in", work / f"out_{amp}", device, opts)
            per_image = summary.seconds / images
            name = "test.py --amp (bf16)" if amp else "test.py (fp32; convolutions in TF32, PyTorch's default)"
            rows.append((name, images, f"{per_image:.2f}", f"{peak_mib(device):.0f}"))
            values[f"{'amp' if amp else 'default'}_seconds_per_image"] = per_image
        return values, rows
    finally:
        shutil.rmtree(work, ignore_errors=True)


def demo_accuracy(device: torch.device, demo: Path) -> tuple[dict, list[tuple]]:
    """Ensemble PSNR against the clean targets of the demo test set, per precision."""
    from models.checkpoint import load_model
    from utils.data.images import from_uint8, read_rgb

    specs = [(256, 64, 16, 0.4), (352, 96, 32, 0.6)]
    models = [load_model(demo / "weights" / f"{t}_best.pth")[0] for t, *_ in specs]
    inputs = sorted((demo / "data" / "test_input_img").glob("*.png"))
    rows, values = [], {}
    for precision in ("fp32", "tf32", "bf16"):
        with cuda_settings(tf32=precision == "tf32", benchmark=True):
            restorers = [Restorer(m, device, amp=precision == "bf16") for m in models]
            scores = []
            for path in inputs:
                out = to_uint8(ensemble(restorers, from_uint8(read_rgb(path), device), specs))
                clean = read_rgb(demo / "data" / "test_label_img" / path.name.replace("input", "label"))
                scores.append(psnr_uint8(out, clean))
        values[f"{precision}_psnr"] = float(np.mean(scores))
        rows.append((precision, f"{np.mean(scores):.4f}", f"{np.mean(scores) - values['fp32_psnr']:+.4f}"))
    return values, rows


@dataclass(frozen=True)
class TrainBench:
    """One training measurement: the model and batch, the precisions, and what feeds the steps (tensors already in
    memory, and the real loader with each of ``workers`` processes, in bf16)."""

    wf: int
    depth: int
    batch: int
    size: int
    steps: int
    precisions: tuple[str, ...] = ("bf16", "tf32", "fp32")  # fastest first
    workers: tuple[int, ...] = ()
    memory: bool = True
    compile: bool = False  # one more row: bf16 from memory with torch.compile (compilation timed apart)


def training(device: torch.device, bench: TrainBench, report: Report, pairs: list[Pair] | None = None) -> dict:
    """Samples per second from memory and through the real loader (PNG patches, augmentation v3), added to the
    report's ``training`` section; ``pairs`` are real patches (else synthetic ones are written).

    Each row is written to the report as soon as it is measured: the slowest setting must not
    cost the others when a time limit cuts the run short. Returns the rates of this call.
    """
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    header = ("width, batch", "precision", "data", "samples/s", "min per contest epoch", "peak MiB")
    section = report.data.setdefault("training", {"contest_patches": CONTEST_PATCHES})
    rows, rates = report.rows.setdefault("training", []), {}
    try:
        pairs = write_patches(work, 4 * bench.batch, bench.size) if pairs is None else pairs
        for precision, compiled, feed, workers in training_feeds(bench):
            step = train_step(bench, device, precision == "bf16", compiled)
            if feed == "in memory":
                x = torch.rand(bench.batch, 3, bench.size, bench.size)
                batches = [(x, x.flip(-1))] * (bench.steps + 2)
            else:
                loader = real_loader(pairs, bench.size, bench.batch, workers, device)
                batches = loader_batches(loader, bench.steps + 2)
            reset_peak(device)
            start = time.perf_counter()
            rate = samples_per_second(step, batches, bench.steps, device, tf32=precision == "tf32")
            name = PRECISION_NAMES[precision] + (" + torch.compile" if compiled else "")
            key = f"wf{bench.wf}_b{bench.batch}_{precision}{'_compiled' if compiled else ''}_{feed}"
            key = key.replace(", ", "_").replace(" ", "_")
            rates[key + "_samples_per_s"] = rate
            if compiled:
                section[key + "_first_steps_seconds"] = time.perf_counter() - start
            rows.append((f"{bench.wf}, {bench.batch}", name, feed, f"{rate:.1f}", f"{CONTEST_PATCHES / rate / 60:.1f}",
                         f"{peak_mib(device):.0f}"))  # fmt: skip
            section |= rates | {"patch": bench.size}
            report.section("training", section, rows, header)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rates


def training_feeds(bench: TrainBench) -> list[tuple[str, bool, str, int]]:
    """(precision, compiled, feed, workers) of each row a ``TrainBench`` asks for, in the order they are measured."""
    feeds = [(p, False, "in memory", 0) for p in bench.precisions] if bench.memory else []
    feeds += [("bf16", False, f"loader, {n} workers", n) for n in bench.workers]
    return feeds + ([("bf16", True, "in memory", 0)] if bench.compile else [])


PRECISION_NAMES = {"fp32": "fp32 (TF32 off)", "tf32": "TF32", "bf16": "bf16 autocast"}


def real_loader(pairs: list[Pair], size: int, batch: int, workers: int, device: torch.device):
    """The trainer's loader: PNG patches, augmentation v3, pinned memory on CUDA."""
    return torch.utils.data.DataLoader(
        PatchDataset(pairs, build_augmentation(size, 3)), batch_size=batch, shuffle=True, num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=True, persistent_workers=workers > 0,
    )  # fmt: skip


def write_patches(folder: Path, count: int, size: int) -> list[Pair]:
    (folder / "in").mkdir()
    (folder / "tar").mkdir()
    pairs = []
    for i in range(count):
        img = (synthetic_image(size, size, seed=i).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        pair = Pair(folder / "in" / f"{i}.png", folder / "tar" / f"{i}.png")
        cv2.imwrite(str(pair.input), img)
        cv2.imwrite(str(pair.target), cv2.GaussianBlur(img, (0, 0), 1))
        pairs.append(pair)
    return pairs


def loader_batches(loader, n: int):
    """Yield ``n`` batches, starting the loader again as often as needed."""
    done = 0
    while done < n:
        for item in loader:
            yield item
            done += 1
            if done == n:
                return


def train_step(bench: TrainBench, device: torch.device, bf16: bool, compiled: bool = False):
    """One training step as the trainer takes it: channels-last, autocast, loss, clipping, Adam."""
    torch.manual_seed(0)
    model = HINet(wf=bench.wf, depth=bench.depth).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    criterion = RestorationLoss().to(device)
    forward = torch.compile(model) if compiled else model

    def step(images, targets):
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            outputs = forward(images)
        loss = criterion([o.float() for o in outputs], targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def samples_per_second(step, batches, steps: int, device: torch.device, tf32: bool) -> float:
    it = iter(batches)
    with cuda_settings(tf32=tf32, benchmark=True):
        for _ in range(2):  # warm-up: cuDNN choices, allocator
            step(*next(it))
        sync(device)
        start, n = time.perf_counter(), 0
        for _ in range(steps):
            images, targets = next(it)
            step(images, targets)
            n += images.shape[0]
        sync(device)
    return n / (time.perf_counter() - start)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny models and images (a smoke run, minutes on a CPU)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--out", default="results/bench_gpu", help="folder of gpu_report.json and gpu_report.md")
    p.add_argument("--demo", help="a folder after `make demo` (weights/, data/): ensemble PSNR per precision")
    p.add_argument("--skip", default="", help="comma-separated sections to skip: " + ",".join(SECTIONS))
    return p.parse_args(argv)


def check_demo(demo: Path) -> None:
    """The folder ``--demo`` names must hold what ``make demo`` leaves, checked before any section runs."""
    needed = [demo / "weights" / f"{t}_best.pth" for t in (256, 352)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        fail(f"--demo {demo} lacks {missing[0]}; run `make demo` first, or pass the folder it ran in.")
    inputs = sorted((demo / "data" / "test_input_img").glob("*.png"))
    if not inputs:
        fail(f"--demo {demo} has no test images in data/test_input_img; run `make demo` first.")
    labels = [demo / "data" / "test_label_img" / p.name.replace("input", "label") for p in inputs]
    absent = [str(p) for p in labels if not p.is_file()]
    if absent:
        fail(f"--demo {demo} lacks the clean image {absent[0]}; run `make demo` again.")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda was asked for but CUDA is not available here; use --device cpu.")
    skip = set(filter(None, args.skip.split(",")))
    unknown = sorted(skip - set(SECTIONS))
    if unknown:
        fail(f"--skip names an unknown section {unknown[0]!r}; the sections are {', '.join(SECTIONS)}.")
    if args.demo and "demo" not in skip:
        check_demo(Path(args.demo))
    if device.type == "cpu":
        torch.set_num_threads(2)
    q = args.quick
    report = Report(Path(args.out))
    report.section("environment", environment(device))
    wf, depth = (4, 3) if q else (64, 5)
    start = time.time()
    if "correctness" not in skip:
        values, rows = correctness(device, wf, depth, 32 if q else 256)
        report.section("correctness", values, rows, ("comparison", "max abs diff", "PSNR dB"))
    hw = (120, 150) if q else (2448, 3264)
    specs = [(64, 16, 16, 0.4), (96, 24, 32, 0.6)] if q else [(256, 64, 16, 0.4), (352, 96, 32, 0.6)]
    if "inference" not in skip:
        values, rows = inference(device, wf, depth, hw, specs)
        values["image"] = f"{hw[0]}x{hw[1]}"
        header = (
            "implementation",
            "cudnn.benchmark",
            "s per image",
            "tiles/s",
            "vs original",
            "max grey diff vs fp32",
            "peak MiB",
        )
        report.section("inference", values, rows, header)
    if "end_to_end" not in skip:
        values, rows = end_to_end(device, wf, depth, hw, specs, 2 if q else 3)
        report.section("end to end", values, rows, ("command", "images", "s per image", "peak MiB"))
    if "training" not in skip:
        training(device, TrainBench(wf, depth, *((2, 64, 2) if q else (16, 256, 20)), workers=(0,) if q else (2, 8, 16)),
                 report)  # fmt: skip
    if "sweep" not in skip:
        sweep(device, wf, depth, hw, specs, report, deadline=float("inf"))
    if "whole_image" not in skip:
        whole_image(device, wf, depth, hw, specs, report)
    if args.demo and "demo" not in skip:
        values, rows = demo_accuracy(device, Path(args.demo))
        report.section("demo accuracy", values, rows, ("precision", "ensemble PSNR dB", "vs fp32"))
    if not q and "compile" not in skip:
        values, rows = compiled(device, wf, depth, hw, specs)
        report.section("torch.compile", values, rows, ("variant", "first image s", "s per image", "speed-up"))
    report.section("run", {"seconds": round(time.time() - start, 1)})
    return report.data


def cli(argv: list[str] | None = None) -> int:
    """The command line: the report's files are the result; a user's mistake is one sentence (exit status 2)."""
    main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(cli))

"""Inference speed and memory: test.py's tiled path against a straightforward port of the original loop.

    python -m bench.bench_inference [--quick]

Measured in one run on the same machine:
1. the project's path vs the original loop (a new zero tensor and a copy per tile,
   per-tile accumulation with a vote mask, default memory layout), same checkpoint and
   image, width 8: speed ratio and largest difference in grey levels (fp32);
2. channels-last vs the default layout at width 64 on a few tiles;
3. bf16 autocast vs fp32 (speed; PSNR change is reported by ``--eval_checkpoint``);
4. stride-aware vs all tiles on a 2448x3264 image for both tile sizes: counts and times;
5. overhead of the tiled path over the model's forward passes alone on the same tiles;
6. peak memory of test.py for 1 and for 8 images of the same size;
7. the window blend against the mean on the same tiles.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.common import ROOT, best_of, table
from models.hinet import HINet
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.tiling import Tiling, gather_tiles, restore_tiled, tile_starts
from utils.data.images import to_uint8
from utils.infer.restorer import Restorer

torch.set_num_threads(2)


def original_loop(model: torch.nn.Module, image: torch.Tensor, tile: int, stride: int, batch_size: int) -> torch.Tensor:
    """The original test.py's loop, ported as written (CPU, stride-aware starts)."""
    _, h, w = image.shape
    result = torch.zeros_like(image)
    votes = torch.zeros_like(image)
    crops, positions = [], []

    def flush():
        with torch.no_grad():
            pred = model(torch.stack(crops))[1]
        for num, (t, left) in enumerate(positions):
            _, ph, pw = result[:, t : t + tile, left : left + tile].shape
            result[:, t : t + tile, left : left + tile] += pred[num][:, :ph, :pw]
            votes[:, t : t + tile, left : left + tile] += 1

    top_margin = int(np.ceil((h - tile) / stride) * stride)
    left_margin = int(np.ceil((w - tile) / stride) * stride)
    for top in range(0, top_margin + 1, stride):
        for left in range(0, left_margin + 1, stride):
            piece = torch.zeros([3, tile, tile], device=image.device)
            part = image[:, top : top + tile, left : left + tile]
            piece[:, : part.shape[1], : part.shape[2]] = part
            crops.append(piece)
            positions.append([top, left])
            if len(crops) == batch_size:
                flush()
                crops, positions = [], []
    if crops:
        flush()
    return result / votes


def synthetic_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3)
    return torch.from_numpy(img).permute(2, 0, 1).contiguous()


def model_of(wf: int, depth: int = 5, seed: int = 0) -> HINet:
    torch.manual_seed(seed)
    return HINet(wf=wf, depth=depth).eval()


def vs_original(size: tuple[int, int], wf: int) -> list[tuple]:
    image = synthetic_image(*size)
    model = model_of(wf)
    t_orig = best_of(lambda: original_loop(model, image, 256, 64, 16), 1)
    reference = original_loop(model, image, 256, 64, 16)
    restorer = Restorer(model_of(wf), torch.device("cpu"))
    t_new = best_of(lambda: restore_tiled(restorer, image, Tiling(256, 64, 16)), 1)
    ours = restore_tiled(restorer, image, Tiling(256, 64, 16))
    diff = np.abs(to_uint8(ours).astype(int) - to_uint8(reference).astype(int)).max()
    n = len(tile_starts(size[0], 256, 64)) * len(tile_starts(size[1], 256, 64))
    return [("original loop", f"{t_orig:.1f}", f"{n / t_orig:.1f}", "1.00x", "-"),
            ("project (test.py path)", f"{t_new:.1f}", f"{n / t_new:.1f}", f"{t_orig / t_new:.2f}x", f"{diff}")]  # fmt: skip


def layout_and_amp(wf: int, tiles: int) -> list[tuple]:
    model = model_of(wf)
    batch = torch.rand(tiles, 3, 256, 256)
    rows = []
    with torch.inference_mode():
        base = best_of(lambda: model(batch), 2)
        rows.append((f"width {wf}, default layout", f"{base / tiles * 1000:.0f}", "1.00x"))
        model_cl = model.to(memory_format=torch.channels_last)
        batch_cl = batch.contiguous(memory_format=torch.channels_last)
        t_cl = best_of(lambda: model_cl(batch_cl), 2)
        rows.append((f"width {wf}, channels-last", f"{t_cl / tiles * 1000:.0f}", f"{base / t_cl:.2f}x"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            t_bf = best_of(lambda: model_cl(batch_cl), 2)
        rows.append((f"width {wf}, channels-last + bf16", f"{t_bf / tiles * 1000:.0f}", f"{base / t_bf:.2f}x"))
    return rows


def stride_aware_vs_all(wf: int, size: tuple[int, int]) -> list[tuple]:
    image = synthetic_image(*size)
    restorer = Restorer(model_of(wf), torch.device("cpu"))
    rows = []
    for tile, stride, batch in ((256, 64, 16), (352, 96, 32)):
        times, counts = {}, {}
        for mode in ("stride_aware", "all"):
            counts[mode] = len(tile_starts(size[0], tile, stride, mode)) * len(tile_starts(size[1], tile, stride, mode))
            run = lambda m=mode, t=tile, s=stride, b=batch: restore_tiled(restorer, image, Tiling(t, s, b, m))  # noqa: E731
            times[mode] = best_of(run, 1)
        rows.append((f"{tile}/{stride}", counts["stride_aware"], counts["all"],
                     f"{counts['stride_aware'] / counts['all']:.3f}", f"{times['stride_aware']:.1f}", f"{times['all']:.1f}",
                     f"{times['stride_aware'] / times['all']:.3f}"))  # fmt: skip
    return rows


def overhead(wf: int, size: tuple[int, int]) -> tuple[float, float]:
    image = synthetic_image(*size)
    restorer = Restorer(model_of(wf), torch.device("cpu"))
    tops, lefts = tile_starts(size[0], 256, 64), tile_starts(size[1], 256, 64)
    grid = torch.tensor([(y, x) for y in tops for x in lefts])
    pad = torch.nn.functional.pad(image, (0, lefts[-1] + 256 - size[1], 0, tops[-1] + 256 - size[0]))
    batches = [gather_tiles(pad, g[:, 0], g[:, 1], 256) for g in grid.split(16)]
    t_forward, t_total = [], []
    for _ in range(3):  # interleaved, best of each
        t_forward.append(best_of(lambda: [restorer(b) for b in batches], 1))
        t_total.append(best_of(lambda: restore_tiled(restorer, image, Tiling(256, 64, 16)), 1))
    return min(t_total), min(t_forward)


def blend_cost(wf: int, size: tuple[int, int]) -> tuple[float, float]:
    """The window blend against the mean on the same tiles: best of three interleaved rounds each."""
    image = synthetic_image(*size)
    restorer = Restorer(model_of(wf), torch.device("cpu"))
    times = {"mean": [], "window": []}
    for _ in range(3):
        for blend in times:
            times[blend].append(
                best_of(lambda b=blend: restore_tiled(restorer, image, Tiling(256, 64, 16, blend=b)), 1)
            )
    return min(times["mean"]), min(times["window"])


def peak_memory(n_images: int, size: tuple[int, int], work: Path) -> float:
    """Peak resident memory (MiB, VmHWM) of test.py restoring ``n_images`` images, in a fresh process."""
    inp = work / f"in_{n_images}"
    inp.mkdir(exist_ok=True)
    img = (synthetic_image(*size).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    for i in range(n_images):
        cv2.imwrite(str(inp / f"test_input_{20000 + i}.png"), img)
    ckpt = work / "m.pth"
    if not ckpt.exists():
        m = model_of(4)
        torch.save({"state_dict": m.state_dict(), "model_config": m.config.to_dict()}, ckpt)
    argv = ["test.py", "--weights", str(ckpt), "--tile_sizes", "256", "--strides", "256", "--input_dir", str(inp),
            "--output_dir", str(work / f"out_{n_images}"), "--no_progress", "--overwrite"]  # fmt: skip
    code = (
        f"import resource, runpy, sys\nsys.argv = {argv!r}\n"
        f"try:\n    runpy.run_path({str(ROOT / 'test.py')!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print([line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


PARTS = ("1", "2", "4", "5", "6", "7")  # the sections (2 covers 2 and 3)


def parse_parts(text: str) -> set[int]:
    """``--parts`` as section numbers; one sentence if it names none or one that does not exist."""
    parts = {x.strip() for x in text.split(",") if x.strip()}
    if not parts or parts - set(PARTS):
        fail(f"--parts {text!r} names no section or an unknown one; choose from {','.join(PARTS)}, e.g. 1,4.")
    return {int(x) for x in parts}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller images (for a smoke run)")
    p.add_argument("--parts", default="1,2,4,5,6,7", help="sections to run (2 covers 2 and 3)")
    args = p.parse_args(argv)
    parts = parse_parts(args.parts)
    cmp_size = (612, 816) if args.quick else (1224, 1632)
    big = (1224, 1632) if args.quick else (2448, 3264)
    report = {}

    if 1 in parts:
        print(f"1. project vs original loop, width 8, one {cmp_size[0]}x{cmp_size[1]} image, tile 256/64, batch 16")
        rows = vs_original(cmp_size, 8)
        print(table(rows, ("implementation", "seconds", "tiles/s", "speed-up", "max grey-level diff")))
        report["vs_original_speedup"] = rows[1][3]
    if 2 in parts:
        print("\n2-3. memory layout and bf16 autocast, forward of 4 tiles of 256x256")
        rows = layout_and_amp(64, 4) + layout_and_amp(8, 8)
        print(table(rows, ("model", "ms per tile", "speed-up")))
    if 4 in parts:
        print(f"\n4. stride-aware vs all tiles on a {big[0]}x{big[1]} image, width 4")
        rows = stride_aware_vs_all(4, big)
        print(
            table(rows, ("tile/stride", "stride-aware", "all", "tile ratio", "s stride-aware", "s all", "time ratio"))
        )
    if 5 in parts:
        t_total, t_forward = overhead(8, cmp_size)
        report["overhead"] = round(t_total / t_forward, 3)
        print(
            f"\n5. overhead: tiled path {t_total:.2f} s, forward passes alone {t_forward:.2f} s: {t_total / t_forward:.3f}x"
        )
    if 6 in parts:
        with tempfile.TemporaryDirectory() as tmp:
            m1, m8 = peak_memory(1, cmp_size, Path(tmp)), peak_memory(8, cmp_size, Path(tmp))
        report.update(peak_mib_1=round(m1), peak_mib_8=round(m8))
        print(f"\n6. peak memory of test.py: 1 image {m1:.0f} MiB, 8 images {m8:.0f} MiB ({m8 / m1:.3f}x)")
    if 7 in parts:
        t_mean, t_window = blend_cost(8, cmp_size)
        report["window_over_mean"] = round(t_window / t_mean, 3)
        print(f"\n7. blend: mean {t_mean:.2f} s, window {t_window:.2f} s: {t_window / t_mean:.3f}x")
    print(json.dumps(report))


if __name__ == "__main__":
    t0 = time.time()
    code = run_cli(main)
    print(
        f"(bench took {time.time() - t0:.0f} s; max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )
    sys.exit(code)

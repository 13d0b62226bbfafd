"""Deployment paths: onnxruntime against PyTorch on the same tiles, and test.py on 2 processes against 1.

    python -m bench.bench_deploy [--weights weights/256_best.pth weights/352_best.pth] [--images data/test_input_img]

Measured in one run on the same machine, as ratios:
1. for each checkpoint, the same batch of tiles through PyTorch eager in fp32, PyTorch with
   bf16 autocast, and onnxruntime (the exported fp32 graph): time per tile, and the largest
   difference to PyTorch fp32 in grey levels;
2. test.py on ``--images`` with both backends: the largest difference between their PNGs, per
   model and for the ensemble (the goal: at most one grey level);
3. test.py on ``--images`` in one process and under ``torchrun --nproc_per_node 2`` (one thread
   each in both runs): wall time, and whether the output folders are identical.
Needs the demo's checkpoints (``make demo``) and ``requirements-onnx.txt``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import ROOT, add_counts, best_of, check_counts, table
from models.checkpoint import load_model, stored_patch_size
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.runtime import autocast
from utils.data.images import list_images, read_rgb
from utils.infer.inputs import check_input_folder
from utils.infer.onnx_model import SecondStage, export_onnx, open_session


def tile_speed(path: str, out: Path, tiles: int) -> tuple:
    """One checkpoint: ms per tile in fp32, bf16 and onnxruntime, and the largest differences to fp32."""
    tile = stored_patch_size(path)
    onnx_path = out / (Path(path).stem + ".onnx")
    export_onnx(path, tile, onnx_path)
    model = SecondStage(load_model(path)[0]).eval()
    batch = torch.rand(tiles, 3, tile, tile, generator=torch.Generator().manual_seed(0))
    session = open_session(onnx_path)
    feed = {session.get_inputs()[0].name: batch.numpy()}
    cpu = torch.device("cpu")
    with torch.inference_mode():
        fp32 = model(batch)
        with autocast(cpu, True):
            bf16 = model(batch).float()
        times = {"fp32": best_of(lambda: model(batch))}
        with autocast(cpu, True):
            times["bf16"] = best_of(lambda: model(batch))
    ort = torch.from_numpy(session.run(None, feed)[0])
    times["onnxruntime"] = best_of(lambda: session.run(None, feed))

    def grey(x: torch.Tensor) -> float:
        return float((x.clamp(0, 1) - fp32.clamp(0, 1)).abs().max() * 255)

    per_tile = [f"{1000 * times[k] / tiles:.1f}" for k in ("fp32", "bf16", "onnxruntime")]
    speed_up = f"{times['fp32'] / times['onnxruntime']:.2f}x"
    return (Path(path).name, *per_tile, speed_up, f"{grey(bf16):.2f}", f"{grey(ort):.3f}")


def test_py(args: list[str], nproc: int | None) -> float:
    """Seconds test.py takes; its own error sentence (or last line) if it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    start = time.perf_counter()
    cmd = [*(launch if nproc else [sys.executable]), str(ROOT / "test.py"), *args, "--no_progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        said = next((x for x in lines if x.startswith("error: ")), lines[-1] if lines else "no message")
        fail(f"test.py {' '.join(args)} failed with exit status {done.returncode} ({said.removeprefix('error: ')}).")
    return time.perf_counter() - start


COUNTS = {"tiles": (8, 1, 64, "tiles per timed batch")}


def check_args(args: argparse.Namespace) -> None:
    """Every flag checked before any work: tile count, checkpoints with their patch size, the image folder."""
    check_counts(args, COUNTS)
    for path in args.weights:
        if stored_patch_size(path) is None:
            fail(f"--weights {path} states no training patch size; pass checkpoints that main.py saved.")
    if not Path(args.images).is_dir():
        fail(
            f"--images {args.images} is not a folder; pass the folder of images test.py restores, e.g. data/test_input_img."
        )
    check_input_folder(Path(args.images))


def max_png_difference(a: Path, b: Path) -> int:
    return max(int(np.abs(read_rgb(p).astype(int) - read_rgb(b / p.name).astype(int)).max()) for p in list_images(a))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=["weights/256_best.pth", "weights/352_best.pth"])
    p.add_argument("--images", default="data/test_input_img", help="folder of the images test.py restores")
    add_counts(p, COUNTS)
    args = p.parse_args(argv)
    check_args(args)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = [tile_speed(w, out, args.tiles) for w in args.weights]
        print(table(rows, ("checkpoint", "fp32 ms/tile", "bf16 ms/tile", "onnxruntime ms/tile", "ort speed-up",
                           "bf16 max diff (grey)", "ort max diff (grey)")))  # fmt: skip
        onnx = [str(out / (Path(w).stem + ".onnx")) for w in args.weights]
        common = ["--input_dir", args.images, "--no_zip", "--blend", "window"]
        diffs = []
        for i in range(len(args.weights)):
            test_py([*common, "--weights", args.weights[i], "--output_dir", str(out / f"t{i}")], None)
            test_py(
                [*common, "--weights", onnx[i], "--backend", "onnxruntime", "--output_dir", str(out / f"o{i}")], None
            )
            diffs.append(max_png_difference(out / f"t{i}", out / f"o{i}"))
        test_py([*common, "--weights", *args.weights, "--output_dir", str(out / "te")], None)
        test_py([*common, "--weights", *onnx, "--backend", "onnxruntime", "--output_dir", str(out / "oe")], None)
        diffs.append(max_png_difference(out / "te", out / "oe"))
        names = [Path(w).stem for w in args.weights] + ["ensemble"]
        print("largest PNG difference, onnxruntime against PyTorch (grey levels): "
              + ", ".join(f"{n} {d}" for n, d in zip(names, diffs, strict=True)))  # fmt: skip
        one = test_py([*common, "--weights", *args.weights, "--output_dir", str(out / "one")], None)
        two = test_py([*common, "--weights", *args.weights, "--output_dir", str(out / "two")], 2)
        same = all(
            (out / "one" / f.name).read_bytes() == f.read_bytes()
            for f in (out / "two").iterdir()
            if f.is_file() and not f.name.startswith(".")
        )
        n = len(list_images(args.images))
        print(f"test.py on {n} images, one thread per process: 1 process {one:.1f} s, 2 processes {two:.1f} s "
              f"(speed-up {one / two:.2f}x); outputs identical: {same}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

"""Export a checkpoint to ONNX for tiles of one size and a dynamic batch, checked at export time.

    python -m scripts.export_onnx --weights weights/256_best.pth --output weights/256_best.onnx
    python test.py --backend onnxruntime --weights weights/256_best.onnx weights/352_best.onnx

The graph is checked with ``onnx.checker`` and run with onnxruntime on random tiles against
PyTorch before the file is kept (written atomically; an existing file is replaced only with
``--overwrite``, and only if it is an export of this project). A run holds the lock of its
``--output`` (``.<name>.hinet-lock`` beside it), so a second export to the same file refuses at
once; folders made for the output are removed again if the export fails. Needs ``pip install -r requirements-onnx.txt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.checkpoint import stored_patch_size
from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.infer.onnx_model import TOLERANCE, export_onnx


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", required=True, help="a checkpoint of main.py (or any format test.py reads)")
    p.add_argument("--tile", type=int, help="tile size (default: the patch size the checkpoint was trained on)")
    p.add_argument("--output", help="the .onnx file (default: the checkpoint's name with .onnx)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    weights = Path(args.weights)
    if not weights.is_file():
        fail(f"--weights {weights} does not exist; pass a checkpoint such as weights/256_best.pth.")
    output = Path(args.output) if args.output else weights.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        fail(f"--output {output} must end in .onnx, so that test.py --backend onnxruntime knows it for one.")
    if output.resolve() == weights.resolve():
        fail(f"--output {output} is the checkpoint itself; choose another name.")
    tile = args.tile if args.tile is not None else stored_patch_size(weights)
    if tile is None:
        fail(f"{weights} does not store the patch size it was trained on; pass --tile (256 or 352 for the original's).")
    gap = export_onnx(weights, tile, output, args.overwrite)
    print(
        f"{output}: tiles of {tile} pixels, any batch; onnxruntime within {gap:.1e} of PyTorch (allowed {TOLERANCE:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

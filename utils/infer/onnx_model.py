"""ONNX export of a checkpoint, and an onnxruntime restorer that test.py tiles with like any other.

The exported graph takes a batch of tiles of one fixed size (the batch is dynamic) and returns the
restored tiles (the second stage). A fixed tile keeps every shape in the graph static: HIN's
split and instance norm, the strided convolutions and the transposed ones then export without
the shape arithmetic that breaks dynamic-size exports of restoration models in other runtimes,
and test.py already cuts every image into tiles of one size. The file records what it was
exported from (``METADATA_KEY``), so a tile size other than its own is refused before any work.
"""

from __future__ import annotations

import hashlib
import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from models.hinet import HINetConfig
from utils.core.checkpoint import MAX_IMG_SIZE, load_model
from utils.core.errors import UserError, fail, one_line, reported_write
from utils.core.locks import atomic_path

METADATA_KEY = "hinet_export"  # JSON: tile, model_config, source checkpoint and its SHA-256
OPSET = 18
TOLERANCE = 1e-4  # largest difference to PyTorch allowed at export, in [0, 1] units (1/40 of a grey level)
MISSING = "the ONNX path needs onnx and onnxruntime: pip install -r requirements-onnx.txt"


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        fail(f"{MISSING}.")
    return onnx, onnxruntime


class SecondStage(torch.nn.Module):
    """The restored image alone: what test.py keeps of HINet's two outputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.model(tiles)[1]


def export_onnx(checkpoint: str | Path, tile: int, output: str | Path) -> float:
    """Export ``checkpoint`` for tiles of ``tile`` pixels into ``output`` (atomically); returns the largest
    difference to PyTorch on random tiles, checked against ``TOLERANCE`` before the file is kept."""
    onnx, _ = _onnx()
    model, config, _ = load_model(checkpoint)
    if not (1 <= tile <= MAX_IMG_SIZE and tile % config.size_multiple == 0):
        fail(f"--tile {tile} must be a multiple of {config.size_multiple} (its HINet has depth {config.depth}) "
             f"from {config.size_multiple} to {MAX_IMG_SIZE}.")  # fmt: skip
    wrapper = SecondStage(model).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    meta = {"tile": tile, "model_config": config.to_dict(), "source": Path(checkpoint).name,
            "sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()}  # fmt: skip
    with reported_write(output), atomic_path(output) as tmp:
        try:
            with redirect_stdout(io.StringIO()):  # the exporter prints each of its steps
                program = torch.onnx.export(wrapper, (torch.rand(2, 3, tile, tile),), dynamo=True, opset_version=OPSET,
                                            input_names=["tiles"], output_names=["restored"], verbose=False,
                                            dynamic_shapes={"tiles": {0: batch}})  # fmt: skip
        except ImportError as err:
            fail(f"{MISSING} ({one_line(err)}).")
        proto = program.model_proto
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.checker.check_model(proto)
        onnx.save(proto, tmp)
        gap = max_difference(tmp, wrapper, tile)
        if not gap <= TOLERANCE:
            fail(
                f"the export of {checkpoint} differs from PyTorch by {gap:.2g} (allowed {TOLERANCE:g}); nothing was written."
            )
    return gap


def max_difference(path: str | Path, wrapper: torch.nn.Module, tile: int) -> float:
    """Largest absolute difference between onnxruntime and PyTorch on random tiles, batches of 1 and 3."""
    session = open_session(path)
    generator = torch.Generator().manual_seed(0)
    gap = 0.0
    for n in (1, 3):
        tiles = torch.rand(n, 3, tile, tile, generator=generator)
        with torch.no_grad():
            expected = wrapper(tiles).numpy()
        got = session.run(None, {session.get_inputs()[0].name: tiles.numpy()})[0]
        gap = max(gap, float(np.abs(got - expected).max()))
    return gap


def open_session(path: str | Path, device: torch.device | None = None):
    """An onnxruntime session on the CPU (or CUDA where onnxruntime has it and ``device`` asks for it)."""
    _, ort = _onnx()
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable files
        fail(f"{path} cannot be opened as an ONNX model ({one_line(err)}); export it again with scripts.export_onnx.")


def export_metadata(path: str | Path, session=None) -> dict:
    """What an exported file records of itself (read from ``session`` when it is open already); a file this
    project did not export is one sentence."""
    session = session or open_session(path)
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = json.loads(text) if text else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("tile"), int):
        fail(f"{path} is not an export of this project (no {METADATA_KEY} record); export it with scripts.export_onnx.")
    return meta


def is_export(path: str | Path) -> bool:
    """True if ``path`` is an ONNX file this project exported (so ``--overwrite`` may replace it)."""
    try:
        export_metadata(path)
    except UserError:
        return False
    return True


class OnnxRestorer:
    """Restores batches of tiles with onnxruntime, with the interface of ``Restorer``."""

    def __init__(self, path: str | Path, device: torch.device) -> None:
        self.path, self.device = Path(path), device
        self.session = open_session(path, device)
        meta = export_metadata(path, self.session)
        self.tile = meta["tile"]
        self.config = HINetConfig.from_dict(meta["model_config"])
        self.size_multiple = self.tile  # only whole tiles: a whole image cannot be one pass
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[-2:] != (self.tile, self.tile):
            fail(f"{self.path} was exported for tiles of {self.tile} pixels, not {batch.shape[-1]}x{batch.shape[-2]}.")
        tiles = batch.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: tiles})[0]).to(self.device)


def onnx_restorers(specs: list, device: torch.device, opts) -> list[OnnxRestorer]:
    """test.py --backend onnxruntime: one restorer per .onnx file, each for the tile its spec asks."""
    from utils.infer.options import check_specs

    unsupported = [flag for flag, on in (("--amp", opts.amp), ("--compile", opts.compile),
                   ("--local_stats", opts.local_stats), ("--tile_mode full", opts.tile_mode == "full")) if on]  # fmt: skip
    if unsupported:
        fail(f"--backend onnxruntime runs the exported fp32 graph on fixed tiles; drop {', '.join(unsupported)}.")
    restorers = []
    for spec in specs:
        if spec.checkpoint.suffix.lower() != ".onnx":
            fail(f"--backend onnxruntime needs .onnx files, not {spec.checkpoint}; export it first: python -m "
                 f"scripts.export_onnx --weights {spec.checkpoint} --output {spec.checkpoint.with_suffix('.onnx')}.")  # fmt: skip
        restorer = OnnxRestorer(spec.checkpoint, device)
        if restorer.tile != spec.tile:
            fail(f"{spec.checkpoint} was exported for tiles of {restorer.tile} pixels, not the {spec.tile} asked; "
                 f"drop --tile_sizes, or export it again with --tile {spec.tile}.")  # fmt: skip
        restorers.append(restorer)
    check_specs(specs, [r.config for r in restorers])
    return restorers

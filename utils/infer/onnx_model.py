"""ONNX export of a checkpoint, and an onnxruntime restorer that test.py tiles with like any other.

The exported graph takes a batch of tiles of one fixed size (the batch is dynamic) and returns the
restored tiles (the second stage). A fixed tile keeps every shape in the graph static: HIN's
split and instance norm, the strided convolutions and the transposed ones then export without
the shape arithmetic that breaks dynamic-size exports of restoration models in other runtimes,
and test.py already cuts every image into tiles of one size. The file records what it was
exported from (``METADATA_KEY``), so a tile size other than its own is refused before any work.
A file is made a session only if it is a graph of the kind the export writes (``onnx_checks``),
and a run stops on Ctrl-C or SIGTERM between two operators (``run_session``).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from models.checkpoint import MAX_IMG_SIZE, load_model
from models.hinet import HINetConfig
from utils.core.errors import UserError, fail, one_line
from utils.core.owned import Output, owned_output
from utils.infer.onnx_checks import AGAIN, METADATA_KEY, check_graph, check_io, check_record, check_restored

OPSET = 18
TOLERANCE = 1e-4  # largest difference to PyTorch allowed at export, in [0, 1] units (1/40 of a grey level)
MISSING = "the ONNX path needs onnx and onnxruntime: pip install -r requirements-onnx.txt"
STOP_WAIT = 10.0  # seconds a stopped run has to finish the operator it is in
OUT_OF_MEMORY = ("DefaultCPUAllocator", "out of memory", "Failed to allocate memory", "bad_alloc")
QUIET = 4  # onnxruntime logs only fatal errors: the errors it raises are reported as one sentence
T = TypeVar("T")


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        fail(f"{MISSING}.")
    return onnx, onnxruntime


def _interruptible(work: Callable[[], T], stop: Callable[[], None] | None = None) -> T:
    """``work()`` in a helper thread while this one waits in short steps.

    onnxruntime holds on to the calling thread until a graph has run, and Python runs signal
    handlers only between bytecodes, so Ctrl-C and SIGTERM (a KeyboardInterrupt from
    ``run_cli``) would wait for the whole graph. Here the waiting thread takes the interrupt,
    calls ``stop`` (which asks onnxruntime to give up) and re-raises once the helper is done, or
    after ``STOP_WAIT``. It waits on an event, not on ``Thread.join``, which an interrupt leaves
    believing a running thread has ended (Python 3.11).
    """
    result: dict = {}
    done = threading.Event()

    def target() -> None:
        try:
            result["value"] = work()
        except BaseException as err:  # handed to the waiting thread
            result["error"] = err
        finally:
            done.set()

    threading.Thread(target=target, name="onnxruntime", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except KeyboardInterrupt:
        if stop is not None:
            stop()
        done.wait(STOP_WAIT)
        raise
    if "error" in result:
        raise result["error"]
    return result["value"]


def run_session(session, feed: dict[str, np.ndarray]) -> list:
    """``session.run`` that Ctrl-C and SIGTERM end between two operators (onnxruntime's ``RunOptions.terminate``)."""
    _, ort = _onnx()
    options = ort.RunOptions()
    options.log_severity_level = QUIET
    return _interruptible(lambda: session.run(None, feed, options), lambda: setattr(options, "terminate", True))


def from_onnxruntime(err: BaseException) -> bool:
    """True for the errors onnxruntime raises while it runs a graph (its own exception types)."""
    return type(err).__module__.startswith("onnxruntime") or isinstance(err, MemoryError)


def out_of_memory(err: BaseException | None) -> bool:
    """True if ``err``, or an error it was raised from, says that memory ran out (PyTorch's or onnxruntime's)."""
    for _ in range(8):
        if err is None:
            return False
        if isinstance(err, (MemoryError, torch.OutOfMemoryError)) or any(s in str(err) for s in OUT_OF_MEMORY):
            return True
        err = err.__cause__ or err.__context__
    return False


class SecondStage(torch.nn.Module):
    """The restored image alone: what test.py keeps of HINet's two outputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.model(tiles)[1]


def export_onnx(checkpoint: str | Path, tile: int, output: str | Path, overwrite: bool = False) -> float:
    """Export ``checkpoint`` for tiles of ``tile`` pixels into ``output`` (an owned output: it replaces only an
    export of this project, with ``overwrite``); returns the largest difference to PyTorch on random tiles,
    checked against ``TOLERANCE`` before the file is kept. Memory running out (a large ``tile``) is one sentence."""
    onnx, _ = _onnx()
    out = Output(Path(output), "an ONNX export", "--output", "scripts.export_onnx", overwrite, ours=is_export)
    with owned_output(out) as tmp:
        model, config, _ = load_model(checkpoint)
        if not 1 <= tile <= MAX_IMG_SIZE:
            fail(f"--tile {tile} must be from 1 to {MAX_IMG_SIZE} pixels.")
        meta = {"tile": tile, "model_config": config.to_dict(), "source": Path(checkpoint).name,
                "sha256": hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()}  # fmt: skip
        gap = _export_checked(SecondStage(model).eval(), meta, tmp)
        if not gap <= TOLERANCE:
            fail(
                f"the export of {checkpoint} differs from PyTorch by {gap:.2g} (allowed {TOLERANCE:g}); nothing was written."
            )
    return gap


def _export_checked(wrapper: torch.nn.Module, meta: dict, path: Path) -> float:
    """Write the export of ``wrapper`` to ``path``; its largest difference to PyTorch. Memory running out is one
    sentence."""
    onnx, _ = _onnx()
    try:
        onnx.save(_exported(wrapper, meta["tile"], meta), path)
        return max_difference(path, wrapper, meta["tile"])
    except Exception as err:
        if not out_of_memory(err):
            raise
        fail(f"exporting {meta['source']} for tiles of {meta['tile']} pixels ran out of memory ({one_line(err)}); "
             f"pass a smaller --tile (nothing was written).")  # fmt: skip


def _exported(wrapper: torch.nn.Module, tile: int, meta: dict):
    """The checked ONNX model of ``wrapper`` for tiles of ``tile`` pixels and any batch, with its record ``meta``."""
    onnx, _ = _onnx()
    batch = torch.export.Dim("batch", min=1, max=4096)
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
    return proto


def max_difference(path: str | Path, wrapper: torch.nn.Module, tile: int) -> float:
    """Largest absolute difference between onnxruntime and PyTorch on random tiles, batches of 1 and 3."""
    session = open_session(path)
    generator = torch.Generator().manual_seed(0)
    gap = 0.0
    for n in (1, 3):
        tiles = torch.rand(n, 3, tile, tile, generator=generator)
        with torch.no_grad():
            expected = wrapper(tiles).numpy()
        got = run_session(session, {session.get_inputs()[0].name: tiles.numpy()})[0]
        gap = max(gap, float(np.abs(got - expected).max()))
    return gap


def open_session(path: str | Path, device: torch.device | None = None):
    """An onnxruntime session on the CPU (or CUDA where onnxruntime has it and ``device`` asks for it), made
    only from a graph of the kind the project exports (``check_graph``), from the very bytes checked."""
    onnx, ort = _onnx()
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        data = Path(path).read_bytes()
        proto = onnx.load_model_from_string(data)
    except Exception as err:  # an unreadable file, or protobuf's own error types for one that is not a model
        fail(f"{path} cannot be opened as an ONNX model ({one_line(err)}); export it again with scripts.export_onnx.")
    check_graph(proto, path)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = QUIET
        return _interruptible(lambda: ort.InferenceSession(data, options, providers=providers))
    except Exception as err:  # onnxruntime raises its own exception types for graphs it cannot load
        fail(f"{path} cannot be opened as an ONNX model ({one_line(err)}); export it again with scripts.export_onnx.")


def export_metadata(path: str | Path, session=None) -> dict:
    """What an exported file records of itself (read from ``session`` when it is open already), checked to
    state a usable tile and architecture; a file this project did not export is one sentence."""
    session = session or open_session(path)
    text = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = json.loads(text) if text else None
    except json.JSONDecodeError:
        meta = None
    return check_record(meta, path)


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
        check_io(self.session, self.path, self.tile)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[-2:] != (self.tile, self.tile):
            fail(f"{self.path} was exported for tiles of {self.tile} pixels, not {batch.shape[-1]}x{batch.shape[-2]}.")
        tiles = batch.detach().float().cpu().contiguous().numpy()
        try:
            restored = run_session(self.session, {self.input_name: tiles})[0]
        except Exception as err:
            if not from_onnxruntime(err):
                raise
            fail(f"{self.path} failed on a batch of {len(tiles)} tile(s) ({one_line(err)}); if memory ran out, "
                 f"pass a smaller --batch_sizes, else {AGAIN}.")  # fmt: skip
        return torch.from_numpy(check_restored(restored, len(tiles), self.tile, self.path)).to(self.device)


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
    check_specs(specs)
    return restorers

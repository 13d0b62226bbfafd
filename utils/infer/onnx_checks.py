"""What an ONNX file must be before test.py runs it: a graph of the kind scripts.export_onnx writes.

The export is a straight chain of standard operators (opset ``OPSET`` of the default domain) with
one input, a batch of float32 tiles ``[batch, 3, tile, tile]``, and one output of the same shape.
Anything else cannot come from the project's exporter, and some of it cannot be stopped once it
runs: a ``Loop`` may never end, and onnxruntime ignores signals while a graph runs. So a file is
refused, in one sentence, before a session is made from it: a node that carries a subgraph (Loop,
Scan, If and the like), an operator or opset outside the default domain, a model-local function,
data kept in another file. What the graph declares of its input and output is compared with the
tile its record states when it is loaded, and every batch it returns is checked again, since a
graph may declare shapes it does not keep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.checkpoint import MAX_IMG_SIZE, config_problems, img_size_problem
from models.hinet import HINetConfig
from utils.core.errors import fail

METADATA_KEY = "hinet_export"  # JSON: tile, model_config, source checkpoint and its SHA-256
DEFAULT_DOMAINS = ("", "ai.onnx")
AGAIN = "export the checkpoint again with scripts.export_onnx"


def _graph_problem(proto) -> str | None:
    """Why the model ``proto`` is not a graph the project's exporter writes (None if it is one)."""
    custom = sorted({o.domain for o in proto.opset_import if o.domain not in DEFAULT_DOMAINS})
    if custom:
        return f"imports operators of the domain {custom[0]!r}"
    if len(proto.functions):
        return f"defines its own function {proto.functions[0].name!r}"
    for node in proto.graph.node:
        if node.domain not in DEFAULT_DOMAINS:
            return f"has a {node.op_type} node of the domain {node.domain!r}"
        if any(a.HasField("g") or len(a.graphs) for a in node.attribute):
            return f"has a {node.op_type} node, whose subgraph may run without end"
    for tensor in proto.graph.initializer:
        if tensor.data_location == tensor.EXTERNAL:
            return f"keeps its tensor {tensor.name!r} in another file"
    return None


def check_graph(proto, path: str | Path) -> None:
    """Refuse, before onnxruntime sees it, a model that the project's exporter never writes."""
    problem = _graph_problem(proto)
    if problem:
        fail(f"{path} {problem}, which an export of this project never does; {AGAIN}.")


def check_record(meta, path: str | Path) -> dict:
    """The export record ``meta`` (parsed JSON) if it states a usable tile and architecture; else one sentence."""
    if not isinstance(meta, dict) or not isinstance(meta.get("tile"), int):
        fail(f"{path} is not an export of this project (no {METADATA_KEY} record); export it with scripts.export_onnx.")
    stored = meta.get("model_config")
    try:
        config = HINetConfig.from_dict(stored) if isinstance(stored, dict) else None
    except (TypeError, ValueError):
        config = None
    if config is None or config_problems(config):
        fail(f"{path} has a {METADATA_KEY} record without a valid model_config; {AGAIN}.")
    if img_size_problem(meta["tile"]) is not None:
        fail(f"{path} records tiles of {meta['tile']} pixels, not a tile size from 1 to {MAX_IMG_SIZE}; {AGAIN}.")
    return meta


def _declared_problem(arg, tile: int) -> str | None:
    """Why an input or output that onnxruntime describes as ``arg`` cannot be a batch of tiles (None if it can)."""
    if arg.type != "tensor(float)":
        return f"of type {arg.type}"
    shape = list(arg.shape or [])
    if len(shape) != 4:
        return f"of shape {shape}"
    if isinstance(shape[0], int):
        return f"of a fixed batch of {shape[0]}"
    if any(isinstance(got, int) and got != want for got, want in zip(shape[1:], (3, tile, tile))):
        return f"of shape {shape}"
    return None


def check_io(session, path: str | Path, tile: int) -> None:
    """Refuse a graph whose declared input or output is not a batch of float32 tiles of ``tile`` pixels."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        fail(
            f"{path} takes {len(inputs)} input(s) and gives {len(outputs)} output(s), not one batch of tiles "
            f"and one batch of restored tiles; {AGAIN}."
        )
    for what, arg in (("input", inputs[0]), ("output", outputs[0])):
        problem = _declared_problem(arg, tile)
        if problem:
            fail(
                f"{path} declares its {what} {arg.name!r} {problem}, not float32 [batch, 3, {tile}, {tile}] "
                f"as its tiles of {tile} pixels need; {AGAIN}."
            )


def check_restored(restored, count: int, tile: int, path: str | Path) -> np.ndarray:
    """``restored`` if it is ``count`` float32 tiles of 3 channels and ``tile`` pixels; else one sentence."""
    shape, dtype = getattr(restored, "shape", None), getattr(restored, "dtype", type(restored).__name__)
    if not isinstance(restored, np.ndarray) or dtype != np.float32 or shape != (count, 3, tile, tile):
        fail(
            f"{path} returned {dtype} of shape {list(shape) if shape is not None else '?'} for {count} tile(s) of "
            f"{tile} pixels, not float32 [{count}, 3, {tile}, {tile}]; {AGAIN}."
        )
    return restored

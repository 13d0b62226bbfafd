"""Crafted ONNX files and exports under pressure: each is one sentence and exit 2, and signals end a run."""

import _thread
import json
import signal
import subprocess
import sys
import threading
import time
import types

import cv2
import numpy as np
import pytest
import torch

from conftest import ROOT, hold_lock, load_script, run_cli, tiny_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from scripts import export_onnx  # noqa: E402
from utils.infer import onnx_model  # noqa: E402

test_script = load_script("test")
TILE = 32
CONFIG = tiny_model().config.to_dict()
TILES = ["batch", 3, TILE, TILE]


def _model(nodes: list, inits: tuple = (), out_shape: list = TILES, opsets: tuple = ()) -> onnx.ModelProto:
    """A graph from ``tiles`` to ``restored`` with a valid export record, as a crafted file would have it."""
    x = helper.make_tensor_value_info("tiles", TensorProto.FLOAT, TILES)
    y = helper.make_tensor_value_info("restored", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, "crafted", [x], [y], list(inits))
    imports = [helper.make_opsetid("", 18), *(helper.make_opsetid(d, 1) for d in opsets)]
    model = helper.make_model(graph, opset_imports=imports, ir_version=10)
    _record(model, {"tile": TILE, "model_config": CONFIG})
    return model


def _record(model: onnx.ModelProto, meta: dict) -> None:
    del model.metadata_props[:]  # a crafted file states what it likes
    entry = model.metadata_props.add()
    entry.key, entry.value = "hinet_export", json.dumps(meta)


def _const(name: str, values, dtype=np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=dtype), name)


def _subgraph(name: str, inputs: list, outputs: list, nodes: list) -> onnx.GraphProto:
    """A loop body or a branch: ``inputs`` as (name, type, shape), ``outputs`` as (name, type)."""
    info = [helper.make_tensor_value_info(*i) for i in inputs]
    return helper.make_graph(nodes, name, info, [helper.make_tensor_value_info(n, t, None) for n, t in outputs])


def _loop() -> onnx.ModelProto:
    """Two rounds of nothing (a crafted file would loop for ever)."""
    inputs = [("i", TensorProto.INT64, []), ("c", TensorProto.BOOL, []), ("x", TensorProto.FLOAT, TILES)]
    body = _subgraph("body", inputs, [("c2", TensorProto.BOOL), ("x2", TensorProto.FLOAT)],
                     [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Identity", ["x"], ["x2"])])  # fmt: skip
    node = helper.make_node("Loop", ["m", "cond", "tiles"], ["restored"], body=body)
    return _model([node], (_const("m", 2), _const("cond", True, np.bool_)))


def _if() -> onnx.ModelProto:
    branch = _subgraph("branch", [], [("b", TensorProto.FLOAT)], [helper.make_node("Identity", ["tiles"], ["b"])])
    node = helper.make_node("If", ["cond"], ["restored"], then_branch=branch, else_branch=branch)
    return _model([node], (_const("cond", True, np.bool_),))


def _scan() -> onnx.ModelProto:
    body = _subgraph("body", [("s", TensorProto.FLOAT, [3, TILE, TILE])], [("s2", TensorProto.FLOAT)],
                     [helper.make_node("Identity", ["s"], ["s2"])])  # fmt: skip
    return _model([helper.make_node("Scan", ["tiles"], ["restored"], body=body, num_scan_inputs=1)])


def _two_inputs() -> onnx.ModelProto:
    model = _model([helper.make_node("Add", ["tiles", "extra"], ["restored"])])
    model.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, TILES))
    return model


def _hidden(node: onnx.NodeProto) -> list:
    """``node`` (whose output is ``y``), then a reshape to its own shape that hides the shape from onnxruntime."""
    cast = [helper.make_node("Shape", ["y"], ["s"]), helper.make_node("Cast", ["s"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["f"], ["i"], to=TensorProto.INT64)]  # fmt: skip
    return [node, *cast, helper.make_node("Reshape", ["y", "i"], ["restored"])]


def _wrong(what: str, shape: list | None = None) -> onnx.ModelProto:
    """Grey tiles (the mean of the channels) or tiles of half the size: declared as such, or only at run time."""
    grey = helper.make_node("ReduceMean", ["tiles", "axis"], ["y"])
    half = helper.make_node("AveragePool", ["tiles"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    return _model(_hidden(grey if what == "grey" else half), (_const("axis", [1]),), shape or ["n", "c", "h", "w"])


def _identity(meta: dict | None = None) -> onnx.ModelProto:
    """A graph that returns its tiles, with the record ``meta`` (a valid one by default)."""
    model = _model([helper.make_node("Identity", ["tiles"], ["restored"])])
    if meta is not None:
        _record(model, meta)
    return model


def _huge() -> onnx.ModelProto:
    """Asks for 2^62 bytes at run time (a shape that follows the input, so nothing is folded in advance)."""
    nodes = [helper.make_node("Shape", ["tiles"], ["n"], start=0, end=1), helper.make_node("Mul", ["n", "big"], ["s"]),
             helper.make_node("ConstantOfShape", ["s"], ["z"]), helper.make_node("ReduceSum", ["z"], ["r"], keepdims=0),
             helper.make_node("Add", ["tiles", "r"], ["restored"])]  # fmt: skip
    return _model(nodes, (_const("big", [2**40, 2**20]),))


def _slow(steps: int = 1000, size: int = 1024) -> onnx.ModelProto:
    """Minutes of plain MatMuls (of zeros, on a matrix that follows the input): legal, only slow."""
    nodes = [helper.make_node("ReduceSum", ["tiles"], ["s"], keepdims=0),
             helper.make_node("ConstantOfShape", ["size"], ["w"]), helper.make_node("Mul", ["w", "s"], ["y0"])]  # fmt: skip
    nodes += [helper.make_node("MatMul", [f"y{i}", "y0"], [f"y{i + 1}"]) for i in range(steps)]
    nodes += [helper.make_node("ReduceSum", [f"y{steps}"], ["r"], keepdims=0),
              helper.make_node("Add", ["tiles", "r"], ["restored"])]  # fmt: skip
    return _model(nodes, (_const("size", [size, size]),))


def _fixed_batch(side: str) -> onnx.ModelProto:
    model = _identity()
    getattr(model.graph, side)[0].type.tensor_type.shape.dim[0].dim_value = 1
    return model


CRAFTED = {
    "loop": (_loop, "Loop node, whose subgraph"),
    "if": (_if, "If node, whose subgraph"),
    "scan": (_scan, "Scan node, whose subgraph"),
    "custom_domain": (
        lambda: _model(
            [helper.make_node("Gelu", ["tiles"], ["restored"], domain="com.microsoft")], (), TILES, ("com.microsoft",)
        ),
        "domain 'com.microsoft'",
    ),
    "two_inputs": (_two_inputs, "takes 2 input(s)"),
    "record_tile_64_graph_32": (lambda: _identity({"tile": 2 * TILE, "model_config": CONFIG}), "'tiles' of shape"),
    "fixed_input_batch": (lambda: _fixed_batch("input"), "input 'tiles' of a fixed batch of 1"),
    "one_channel_declared": (lambda: _wrong("grey", ["batch", 1, TILE, TILE]), "output 'restored' of shape"),
    "one_channel_at_run_time": (lambda: _wrong("grey"), "float32 of shape [1, 1, 32, 32]"),
    "half_size_declared": (lambda: _wrong("half", ["batch", 3, TILE // 2, TILE // 2]), "output 'restored' of shape"),
    "half_size_at_run_time": (lambda: _wrong("half"), "float32 of shape [1, 3, 16, 16]"),
    "output_batch_fixed": (lambda: _fixed_batch("output"), "output 'restored' of a fixed batch of 1"),
    "no_model_config": (lambda: _identity({"tile": TILE}), "without a valid model_config"),
    "bad_model_config": (lambda: _identity({"tile": TILE, "model_config": {"wf": "x"}}), "valid model_config"),
    "allocation_fails": (_huge, "Failed to allocate memory"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_in") / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "img.png"), np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    return folder


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_onnx_file_is_one_sentence_naming_it(case, images, tmp_path, capsys):
    build, message = CRAFTED[case]
    path = tmp_path / f"{case}.onnx"
    onnx.save(build(), path)
    args = ["--weights", path, "--backend", "onnxruntime", "--batch_sizes", 1, "--input_dir", images,
            "--output_dir", tmp_path / "out", "--no_progress", "--no_zip", "--device", "cpu"]  # fmt: skip
    code, _, err = run_cli(test_script, args, capsys)
    assert code == 2 and message in err and str(path) in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def slow_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("slow") / "slow.onnx"
    onnx.save(_slow(), path)
    return path


RESTORE = """
import sys, torch
sys.path.insert(0, {root!r})
from utils.core.cli import run_cli
from utils.infer.onnx_model import OnnxRestorer
def main(argv):
    restorer = OnnxRestorer({path!r}, torch.device("cpu"))
    print("running", flush=True)
    restorer(torch.zeros(1, 3, {tile}, {tile}))
    print("finished", flush=True)
sys.exit(run_cli(main))
"""


def test_sigterm_ends_a_slow_onnx_run_within_seconds(slow_onnx):
    code = RESTORE.format(root=str(ROOT), path=str(slow_onnx), tile=TILE)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.5)  # inside session.run, which the graph keeps busy for minutes
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip().endswith("interrupted") and "finished" not in out, err


def test_an_interrupt_stops_onnxruntime_instead_of_waiting_for_it(slow_onnx):
    session = onnx_model.open_session(slow_onnx)
    timer = threading.Timer(0.3, _thread.interrupt_main)  # what Ctrl-C does to the main thread
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        onnx_model.run_session(session, {"tiles": np.zeros((1, 3, TILE, TILE), np.float32)})
    timer.join()
    helpers = [t for t in threading.enumerate() if t.name == "onnxruntime"]
    for helper_thread in helpers:
        helper_thread.join(10)  # minutes if the run were not stopped
    assert helpers == [] or not any(t.is_alive() for t in helpers)


@pytest.fixture
def checkpoint(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": TILE}, path)
    return path


@pytest.mark.parametrize("earlier", [None, b"an earlier file"])
def test_export_refuses_an_output_another_process_holds(checkpoint, tmp_path, capsys, earlier):
    output = tmp_path / "race.onnx"
    if earlier is not None:
        output.write_bytes(earlier)
    holder = hold_lock(output)
    try:
        argv = ["--weights", checkpoint, "--output", output, "--overwrite"]
        code, _, err = run_cli(export_onnx, argv, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"--output {output} is in use by process {holder.pid}" in err and err.count("\n") == 1, err
    assert (output.read_bytes() if output.exists() else None) == earlier


def test_an_interrupted_export_removes_the_folders_it_made(checkpoint, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # what SIGTERM becomes

    monkeypatch.setattr(torch.onnx, "export", interrupted)
    argv = ["--weights", checkpoint, "--output", tmp_path / "newdir1" / "newdir2" / "x.onnx"]
    code, _, err = run_cli(export_onnx, argv, capsys)
    assert code == 130 and "interrupted" in err
    assert [p.name for p in tmp_path.iterdir()] == ["m.pth"]  # no output, lock, staging or parent folder


OUT_OF_MEMORY = {
    "torch_cpu": RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory"),
    "torch_cuda": torch.OutOfMemoryError("CUDA error: out of memory"),
    "onnxruntime_check": None,  # the exported graph itself asks onnxruntime for more memory than there is
}


@pytest.mark.parametrize("case", list(OUT_OF_MEMORY))
def test_export_out_of_memory_suggests_a_smaller_tile(checkpoint, tmp_path, capsys, monkeypatch, case):
    def exporter(*args, **kwargs):
        if OUT_OF_MEMORY[case] is not None:
            raise OUT_OF_MEMORY[case]
        model = _huge()
        del model.metadata_props[:]
        return types.SimpleNamespace(model_proto=model)

    monkeypatch.setattr(torch.onnx, "export", exporter)
    argv = ["--weights", checkpoint, "--output", tmp_path / "new" / "x.onnx"]
    code, _, err = run_cli(export_onnx, argv, capsys)
    assert code == 2 and "ran out of memory" in err and "smaller --tile" in err and err.count("\n") == 1, err
    assert [p.name for p in tmp_path.iterdir()] == ["m.pth"]  # no output, lock, staging or parent folder


def test_export_never_replaces_a_file_that_appeared_while_it_ran(checkpoint, tmp_path, capsys, monkeypatch):
    output = tmp_path / "x.onnx"

    def exporter(*args, **kwargs):
        output.write_text("a file of the user's")
        model = _identity()
        del model.metadata_props[:]  # the export adds its own record
        return types.SimpleNamespace(model_proto=model)

    monkeypatch.setattr(torch.onnx, "export", exporter)
    monkeypatch.setattr(onnx_model, "max_difference", lambda *args: 0.0)
    code, _, err = run_cli(export_onnx, ["--weights", checkpoint, "--output", output], capsys)
    assert code == 2 and f"{output} changed while this command ran" in err and err.count("\n") == 1, err
    assert output.read_text() == "a file of the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth", "x.onnx"]

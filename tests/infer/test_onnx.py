"""ONNX export (scripts.export_onnx) and test.py --backend onnxruntime, on small checkpoints."""

import numpy as np
import pytest
import torch

from conftest import load_script, run_cli, tiny_model
from utils.data.images import read_rgb

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
test_script = load_script("test")
TILE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two tiny checkpoints (one with HIN), each exported once, and three test images."""
    from scripts import export_onnx

    root = tmp_path_factory.mktemp("onnx")
    for i, kwargs in enumerate([dict(), dict(depth=4, hin_position_left=3, output="linear")]):
        model = tiny_model(seed=i, **kwargs)
        torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": TILE},
                   root / f"m{i}.pth")  # fmt: skip
        assert export_onnx.main(["--weights", str(root / f"m{i}.pth")]) == 0
    (root / "in").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 56), (32, 32), (70, 45)]):
        import cv2

        cv2.imwrite(str(root / "in" / f"img_{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return root


def _restore(root, out, capsys, *flags):
    args = ["--input_dir", root / "in", "--output_dir", out, "--no_progress", "--no_zip", *flags]
    return run_cli(test_script, args, capsys)


def test_export_records_its_tile_and_matches_pytorch(exported):
    from utils.infer.onnx_model import export_metadata, max_difference

    meta = export_metadata(exported / "m1.onnx")
    assert meta["tile"] == TILE and meta["model_config"]["depth"] == 4 and meta["source"] == "m1.pth"
    model = tiny_model(seed=1, depth=4, hin_position_left=3, output="linear")
    from utils.infer.onnx_model import SecondStage

    assert max_difference(exported / "m1.onnx", SecondStage(model).eval(), TILE) < 1e-4


def test_backend_gives_the_same_images_within_one_level(exported, tmp_path, capsys):
    torch_flags = ["--weights", exported / "m0.pth", exported / "m1.pth"]
    onnx_flags = ["--weights", exported / "m0.onnx", exported / "m1.onnx", "--backend", "onnxruntime"]
    assert _restore(exported, tmp_path / "torch", capsys, *torch_flags)[0] == 0
    code, out, err = _restore(exported, tmp_path / "onnx", capsys, *onnx_flags)
    assert code == 0, err
    for i in range(3):
        a, b = (read_rgb(tmp_path / f / f"img_{i}.png").astype(int) for f in ("torch", "onnx"))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1


@pytest.mark.parametrize(
    "case, flags, message",
    [
        ("pth", ["--weights", "m0.pth", "--backend", "onnxruntime"], "needs .onnx files, not"),
        (
            "tile",
            ["--weights", "m0.onnx", "--backend", "onnxruntime", "--tile_sizes", "64"],
            "exported for tiles of 32",
        ),
        ("torch", ["--weights", "m0.onnx"], "pass --backend onnxruntime"),
        ("full", ["--weights", "m0.onnx", "--backend", "onnxruntime", "--tile_mode", "full"], "drop --tile_mode full"),
        ("corrupt", ["--weights", "bad.onnx", "--backend", "onnxruntime", "--tile_sizes", "32"], "cannot be opened"),
    ],
)
def test_bad_backend_input_is_one_sentence_and_writes_nothing(exported, tmp_path, capsys, case, flags, message):
    (exported / "bad.onnx").write_bytes(b"not a model")
    flags = [exported / f if f.endswith((".pth", ".onnx")) else f for f in flags]
    code, _, err = _restore(exported, tmp_path / "out", capsys, *flags)
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_export_refuses_to_replace_a_file_it_did_not_write(exported, tmp_path, capsys):
    from scripts import export_onnx

    mine = tmp_path / "notes.onnx"
    mine.write_text("my own file")
    code, _, err = run_cli(export_onnx, ["--weights", exported / "m0.pth", "--output", mine, "--overwrite"], capsys)
    assert code == 2 and "not an ONNX export of this project" in err
    assert mine.read_text() == "my own file"
    code, _, err = run_cli(export_onnx, ["--weights", exported / "m0.pth", "--output", exported / "m0.onnx"], capsys)
    assert code == 2 and "already exists" in err
    code, _, err = run_cli(
        export_onnx, ["--weights", exported / "m0.pth", "--tile", 0, "--output", tmp_path / "z.onnx"], capsys
    )
    assert code == 2 and "--tile 0 must be from 1 to 8192 pixels" in err and not (tmp_path / "z.onnx").exists()

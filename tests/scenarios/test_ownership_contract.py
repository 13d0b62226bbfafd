"""One contract over every writer: with ``--overwrite``, a file of the user's where the output goes is named in one
sentence and nothing on disk changes; the writer's own earlier output is what ``--overwrite`` replaces.

Every writer goes through ``utils.core.owned.owned_output``; each case runs the real command line.
"""

import shutil

import pytest
import torch

import main as train_script
import make_patch
from conftest import FIXTURES, load_script, run_cli, tiny_model, tree_hashes
from scripts import ablation, demo, export_onnx, flare_data, starter
from utils.core.errors import UserError

test_script = load_script("test")
REF = FIXTURES / "inference_reference"
DATA = "data/train_original"


PATCH_ARGS = ["--folds", 3, "--img_size", 64, "--stride", 64, "--resize", 64, "--patch_growth_count", 1,
              "--process_num", 1, "--input_path", f"{DATA}/train_input_img", "--target_path", f"{DATA}/train_label_img",
              "--csv_path", DATA, "--save_path", "data", "--no_progress"]  # fmt: skip

# writer: (module, its arguments, where the user's file lies; the output is its folder, or the file itself)
WRITERS = {
    "make_patch.py": (make_patch, PATCH_ARGS, "data/train/10Folds/0/resize64/mine.png"),
    "main.py": (train_script, ["--data_path", "data", "--model_path", "results", "--img_size", 64], "results/001/mine.txt"),
    "test.py": (test_script, ["--output_dir", "results/sub", "--no_progress"], "results/sub/mine.png"),
    "flare_data": (flare_data, ["--root", "demo", "--no_progress"], "demo/test_input_img/mine.png"),
    "ablation": (ablation, ["--data_path", "data", "--out", "study"], "study/mine.txt"),
    "export_onnx": (export_onnx, ["--weights", "weights/256_best.pth", "--output", "weights/mine.onnx", "--tile", 64], "weights/mine.onnx"),
    "starter": (starter, ["--output", "weights/mine.pth"], "weights/mine.pth"),
    "demo": (demo, [], "weights/256_best.pth"),
}  # fmt: skip


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("writer", list(WRITERS))
def test_no_writer_replaces_a_file_of_the_users(world, capsys, writer, overwrite):
    module, argv, mine = WRITERS[writer]
    if writer == "export_onnx":
        pytest.importorskip("onnxruntime")
    if writer == "demo":
        shutil.rmtree(world / "data")  # the demo's data folder: none yet; its weights/256_best.pth: the user's
    (world / mine).parent.mkdir(parents=True, exist_ok=True)
    (world / mine).write_bytes(b"the user's")
    before = tree_hashes(world)
    code, _, err = run_cli(module, [*argv, "--overwrite"] if overwrite and writer != "demo" else argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert tree_hashes(world) == before
    single_file = writer in ("export_onnx", "starter", "demo")
    assert (mine if single_file else mine.rsplit("/", 1)[0]) in err, err
    if overwrite or writer == "demo":  # the demo always replaces its own copies
        why = (
            "of this project, and only such a file is replaced"
            if single_file
            else f"'{mine.rsplit('/', 1)[1]}', which this project did not write"
        )
        assert why in err, err


def test_a_single_file_output_replaces_only_its_own_kind(world):
    """The demo's copy into ``weights/``: over an earlier demo checkpoint, never over a user's."""
    tagged = world / "tagged.pth"
    torch.save({"state_dict": tiny_model().state_dict(), "config": {"tag": demo.DEMO_TAG}}, tagged)
    weights = world / "weights"
    (weights / "256_best.pth").unlink()
    demo.install_checkpoint(tagged, weights, 256)
    assert (weights / "256_best.pth").read_bytes() == tagged.read_bytes()
    torch.save({"state_dict": tiny_model(seed=1).state_dict(), "config": {"tag": demo.DEMO_TAG}}, tagged)
    demo.install_checkpoint(tagged, weights, 256)  # an earlier demo copy: replaced
    assert (weights / "256_best.pth").read_bytes() == tagged.read_bytes()
    assert sorted(p.name for p in weights.iterdir()) == ["256_best.pth", "352_best.pth"]  # no lock or staging left
    user = (weights / "352_best.pth").read_bytes()
    with pytest.raises(UserError, match="is not a demo checkpoint of this project"):
        demo.install_checkpoint(tagged, weights, 352)
    assert (weights / "352_best.pth").read_bytes() == user

import os
import pickle

import pytest
import torch

from conftest import tiny_model
from models.checkpoint import infer_config, load_model, save_checkpoint
from utils.core.errors import UserError


def _same_outputs(a, b):
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        return torch.equal(a(x)[1], b(x)[1])


@pytest.mark.parametrize("fmt", ["project", "original", "public_release", "public_release_module", "bare"])
def test_loads_every_format(tmp_path, fmt):
    model = tiny_model(seed=3, wf=6, depth=4, hin_position_left=2, hin_position_right=3)
    state = model.state_dict()
    obj = {
        "project": {"state_dict": state, "model_config": model.config.to_dict(), "epoch": 3},
        "original": {"epoch": 7, "state_dict": state, "optimizer": {}},
        "public_release": {"params": state},
        "public_release_module": {"params": {f"module.{k}": v for k, v in state.items()}},
        "bare": state,
    }[fmt]
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    loaded, config, _ = load_model(path)
    assert config.wf == 6 and config.depth == 4
    assert (config.hin_position_left, config.hin_position_right) == (2, 3)
    assert _same_outputs(model, loaded.eval())


def test_infers_no_hin():
    model = tiny_model(depth=3)  # levels 0..2: HIN positions 3..4 unused
    config = infer_config(model.state_dict())
    rebuilt = type(model)(config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nope\.pth does not exist"):
        load_model(tmp_path / "nope.pth")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    with pytest.raises(UserError, match=r"notes\.pth is not a PyTorch checkpoint \(a file written by torch.save\)"):
        load_model(path)


def test_other_architecture_is_summarised(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": tiny_model(wf=4, depth=3).state_dict()}, path)
    with pytest.raises(UserError, match=r"other\.pth does not match the model architecture: .*of another shape"):
        load_model(path, config=dict(wf=8, depth=3))
    with pytest.raises(
        UserError, match=r"\d+ missing parameters \(down_path_1\.2\.downsample\.weight, .* and \d+ more\)"
    ):
        load_model(path, config=dict(wf=4, depth=4))
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, path)
    with pytest.raises(UserError, match="not a HINet checkpoint"):
        load_model(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": _Exploit(marker)}, fh)
    torch.save({"state_dict": _Exploit(marker)}, tmp_path / "evil2.pth")
    for p in (path, tmp_path / "evil2.pth"):
        with pytest.raises(UserError, match=r"evil2?\.pth holds Python objects .* could run code"):
            load_model(p)
    assert not marker.exists()


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"epoch": 1}, path)

    def broken_save(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match=r"could not write .*last\.pth \(disk full\)"):  # one sentence, no traceback
        save_checkpoint({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_output_head_travels_with_the_checkpoint(tmp_path):
    model = tiny_model(seed=2, output="linear")
    path = tmp_path / "linear.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict()}, path)
    loaded, config, _ = load_model(path)
    assert config.output == "linear"
    assert _same_outputs(model, loaded.eval())
    # without a stored configuration (the public release), the contest's sigmoid head
    torch.save({"params": model.state_dict()}, path)
    assert load_model(path)[1].output == "sigmoid"


def test_unknown_stored_output_is_one_sentence(tmp_path):
    model = tiny_model()
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict() | {"output": "tanh"}}, path)
    with pytest.raises(UserError, match="invalid model configuration"):
        load_model(path)


def test_packed_checkpoint_is_half_precision_and_loads(tmp_path):
    from models.checkpoint import pack_checkpoint

    model = tiny_model(seed=4, output="linear")
    src = tmp_path / "256_best.pth"
    torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 256}, src)
    pack_checkpoint(src, tmp_path / "packed.pth", {"profile": "cpu"})
    packed = torch.load(tmp_path / "packed.pth", weights_only=True)
    assert all(v.dtype == torch.float16 for v in packed["state_dict"].values() if v.is_floating_point())
    assert packed["card"] == {"profile": "cpu"} and packed["img_size"] == 256
    loaded, config, _ = load_model(tmp_path / "packed.pth")
    assert config == model.config and next(loaded.parameters()).dtype == torch.float32
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        diff = (loaded.eval()(x)[1] - model(x)[1]).abs().max().item()
    assert 0 < diff < 2e-3  # rounded weights: close, not equal
    torch.save({"state_dict": model.state_dict()}, src)
    with pytest.raises(UserError, match="not a checkpoint of main.py"):
        pack_checkpoint(src, tmp_path / "other.pth", {})


def test_an_averaged_checkpoint_lies_between_the_start_and_the_fine_tune(tmp_path):
    from models.checkpoint import average_checkpoints, pack_checkpoint

    start, tuned = tiny_model(seed=1, output="linear"), tiny_model(seed=2, output="linear")
    for name, model in (("start.pth", start), ("last.pth", tuned)):
        torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 256,
                    "epoch": 6}, tmp_path / name)  # fmt: skip
    mean = average_checkpoints(tmp_path / "start.pth", tmp_path / "last.pth", 0.25)
    assert mean["epoch"] == 6 and mean["model_config"] == tuned.config.to_dict()
    for name, value in mean["state_dict"].items():
        expected = 0.75 * start.state_dict()[name].float() + 0.25 * tuned.state_dict()[name].float()
        assert torch.allclose(value, expected, atol=1e-6), name
    assert not torch.equal(mean["state_dict"]["last.weight"], tuned.state_dict()["last.weight"])
    pack_checkpoint(mean, tmp_path / "packed.pth", {"profile": "finish"})  # packed from memory
    packed = torch.load(tmp_path / "packed.pth", weights_only=True)
    assert torch.equal(packed["state_dict"]["last.weight"], mean["state_dict"]["last.weight"].half())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth", "packed.pth", "start.pth"]


@pytest.mark.parametrize("other", [dict(wf=8), dict(output="sigmoid")])
def test_checkpoints_of_two_architectures_are_not_averaged(tmp_path, other):
    """Another width has other shapes; another output mode has the same weights and another model_config."""
    from models.checkpoint import average_checkpoints

    models = {
        "a.pth": tiny_model(seed=3, **({"output": "linear"} | other)),
        "b.pth": tiny_model(seed=2, output="linear"),
    }
    for name, model in models.items():
        torch.save({"state_dict": model.state_dict(), "model_config": model.config.to_dict(), "img_size": 256},
                   tmp_path / name)  # fmt: skip
    with pytest.raises(UserError, match="not the same architecture"):
        average_checkpoints(tmp_path / "a.pth", tmp_path / "b.pth", 0.5)

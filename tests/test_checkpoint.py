import os
import pickle

import pytest
import torch

from conftest import tiny_model
from utils.core.checkpoint import infer_config, load_model, save_checkpoint
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

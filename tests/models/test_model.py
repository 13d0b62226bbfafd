import pytest
import torch

from conftest import FIXTURES, tiny_model
from models.hinet import HINet


def test_matches_reference_outputs():
    ref = torch.load(FIXTURES / "hinet_tiny_reference.pt", weights_only=True)
    model = HINet(**ref["config"]).eval()
    model.load_state_dict(ref["state_dict"], strict=True)
    with torch.no_grad():
        out_1, out_2 = model(ref["input"])
    assert torch.allclose(out_1, ref["out_1"], atol=1e-5, rtol=0)
    assert torch.allclose(out_2, ref["out_2"], atol=1e-5, rtol=0)


def test_full_size_names_and_shapes_match_official_release():
    with torch.device("meta"):
        model = HINet()
    own = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    expected = {}
    for line in (FIXTURES / "hinet_wf64_state_dict_keys.txt").read_text().splitlines():
        name, shape = line.split(" ", 1)
        expected[name] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    assert own == expected
    assert sum(p.numel() for p in model.parameters()) == 88_668_806


@pytest.mark.parametrize("depth, wf", [(4, 6), (3, 4)])
def test_other_depths_and_widths(depth, wf):
    model = tiny_model(depth=depth, wf=wf)
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        out_1, out_2 = model(x)
    assert out_1.shape == out_2.shape == x.shape
    assert out_2.min() > 0 and out_2.max() < 1  # after the sigmoid
    # HIN sits in levels 3..4 only: a depth-4 model has one normalised level per stage, depth 3 none
    norms = [n for n in model.state_dict() if n.endswith("norm.weight")]
    assert len(norms) == (2 if depth == 4 else 0)
    assert sum(1 for n in model.state_dict() if n.startswith("down_path_1.") and n.endswith("conv_1.weight")) == depth


def test_second_output_is_residual_on_input():
    model = tiny_model()
    torch.nn.init.zeros_(model.last.weight)
    torch.nn.init.zeros_(model.last.bias)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x)[1], torch.sigmoid(x), atol=1e-6)


def test_linear_output_is_the_sigmoid_heads_logits():
    """The two heads share every weight; only the final squashing differs."""
    x = torch.rand(2, 3, 32, 32)
    sigmoid_model, linear_model = tiny_model(seed=5), tiny_model(seed=5, output="linear")
    with torch.no_grad():
        squashed, raw = sigmoid_model(x), linear_model(x)
    for a, b in zip(squashed, raw, strict=True):
        assert torch.allclose(a, torch.sigmoid(b), atol=1e-6)


def test_linear_output_starts_from_the_identity():
    """A zero last layer returns the input itself, where the sigmoid head returns a grey veil over it."""
    model = tiny_model(output="linear")
    torch.nn.init.zeros_(model.last.weight)
    torch.nn.init.zeros_(model.last.bias)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[1], x)


def test_unknown_output_is_refused():
    with pytest.raises(ValueError, match="tanh"):
        HINet(wf=4, depth=3, output="tanh")

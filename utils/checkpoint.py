"""One checkpoint loader for every script, and atomic checkpoint saving.

Accepted formats (all read with ``weights_only=True``, so a file can never run code):

* the project's own: ``{"state_dict", "model_config", ...}`` — the architecture is stored;
* the original solution's: ``{"epoch", "state_dict", "optimizer"}`` — architecture inferred;
* the public HINet release: ``{"params": ...}``, names possibly prefixed ``module.``;
* a bare state dict.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from models.hinet import HINet, HINetConfig
from utils.errors import fail, one_line
from utils.files import atomic_path

STATE_KEYS = ("state_dict", "params", "params_ema", "model")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely, or fail with one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        fail(f"checkpoint {path} does not exist.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        fail(
            f"{path} holds Python objects besides tensors and plain values, which are not loaded because they "
            f"could run code; save only the weights (a state dict) and load that."
        )
    except Exception as err:  # any other parse failure of a user's file is reported, not raised
        fail(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}).")
    if not isinstance(obj, dict):
        fail(f"{path} holds a {type(obj).__name__}, not a checkpoint dictionary.")
    return obj


def extract_state_dict(ckpt: dict, path: str | Path = "checkpoint") -> dict[str, torch.Tensor]:
    """The model weights of any accepted format, with DataParallel/DDP ``module.`` prefixes removed."""
    state = ckpt
    for key in STATE_KEYS:
        if isinstance(ckpt.get(key), dict):
            state = ckpt[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        fail(f"{path} holds no model weights (looked for {', '.join(STATE_KEYS)} or a bare state dict).")
    return {k.removeprefix("module."): v for k, v in tensors.items()}


def infer_config(state: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> HINetConfig:
    """The architecture deduced from tensor names and shapes (``relu_slope`` cannot be: the default is assumed)."""
    if "conv_01.weight" not in state:
        fail(f"{path} is not a HINet checkpoint: it has no parameter 'conv_01.weight'.")
    wf, in_chn = state["conv_01.weight"].shape[:2]
    levels = {int(m.group(1)) for k in state if (m := re.match(r"down_path_1\.(\d+)\.", k))}
    depth = max(levels) + 1 if levels else 0
    hin = sorted(i for i in levels if f"down_path_1.{i}.norm.weight" in state)
    left, right = (hin[0], hin[-1]) if hin else (depth, depth)
    return HINetConfig(in_chn=int(in_chn), wf=int(wf), depth=depth, hin_position_left=left, hin_position_right=right)


def _summarise(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict(strict=True)`` with a one-sentence summary of any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing parameters ({_summarise(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected parameters ({_summarise(unexpected)})")
        if wrong:
            parts.append(f"{len(wrong)} of another shape ({_summarise(wrong)})")
        fail(f"{path} does not match the model architecture: {'; '.join(parts)}.")
    model.load_state_dict(state, strict=True)


def load_model(path: str | Path, config: HINetConfig | dict | None = None) -> tuple[HINet, HINetConfig, dict]:
    """Build a HINet from a checkpoint of any accepted format; returns (model, config, raw checkpoint).

    ``config`` forces an architecture (fields not given keep their defaults); otherwise the
    stored one is used, or it is inferred from the tensors.
    """
    ckpt = read_checkpoint(path)
    state = extract_state_dict(ckpt, path)
    if config is None:
        inferred = infer_config(state, path)
        stored = ckpt.get("model_config")
        config = stored if isinstance(stored, dict) else inferred
        check_stored_config(config, inferred, path)
    try:
        config = HINetConfig.from_dict(config) if isinstance(config, dict) else config
        model = HINet(config)
    except (TypeError, ValueError) as err:
        fail(f"{path} stores an invalid model configuration {config} ({one_line(err)}).")
    load_weights(model, state, path)
    return model, config, ckpt


def check_stored_config(stored: dict | HINetConfig, inferred: HINetConfig, path: str | Path) -> None:
    """Compare the architecture a checkpoint states with the one its tensors show, before building anything.

    A crafted or mixed-up file could otherwise ask for an absurd model (and its memory).
    """
    stated = stored if isinstance(stored, dict) else stored.to_dict()
    differ = [k for k in ("in_chn", "wf", "depth") if stated.get(k) != getattr(inferred, k)]
    if differ:
        pairs = ", ".join(f"{k} {stated.get(k)!r} (tensors: {getattr(inferred, k)})" for k in differ)
        fail(f"{path} states an architecture its weights do not have: {pairs}; the file is damaged or mixed up.")


def save_checkpoint(obj: dict, path: str | Path) -> None:
    """Save atomically: a crash mid-write leaves any previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def stored_patch_size(path: str | Path) -> int | None:
    """The patch size a project checkpoint was trained on, read without loading its tensors; None if absent."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable files are reported when the model is loaded
        return None
    size = ckpt.get("img_size") if isinstance(ckpt, dict) else None
    return size if isinstance(size, int) and size > 0 else None

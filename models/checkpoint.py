"""One checkpoint loader for every script, and atomic checkpoint saving.

Accepted formats (all read with ``weights_only=True``, so a file can never run code):

* the project's own: ``{"state_dict", "model_config", ...}`` — the architecture is stored;
* the original solution's: ``{"epoch", "state_dict", "optimizer"}`` — architecture inferred;
* the public HINet release: ``{"params": ...}``, names possibly prefixed ``module.``;
* a bare state dict.
"""

from __future__ import annotations

import errno
import pickle
import re
from pathlib import Path

import torch

from models.hinet import OUTPUTS, HINet, HINetConfig
from utils.core.errors import fail, one_line, reported_write
from utils.core.locks import atomic_path

STATE_KEYS = ("state_dict", "params", "params_ema", "model")
# What a stored architecture may ask for. A crafted or damaged file could otherwise make the
# loader allocate an absurd model: the ranges and the parameter count are checked first.
MAX_WF = 1024
MAX_DEPTH = 10
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights; the original's HINet has about 88 million
MAX_IMG_SIZE = 8192
REPO = Path(__file__).resolve().parents[1]
STARTER = Path("pretrained") / "hinet_flare_starter.pth"  # the shipped starter model, relative to REPO


def _check_format(path: Path) -> None:
    """A file that torch.save did not write (a CSV, an image, a log) is named as such, before any parsing."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        fail(f"{path} is not a PyTorch checkpoint (a file written by torch.save); pass a .pth file in --weights.")


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file safely, or fail with one sentence naming the file."""
    path = Path(path)
    if not path.is_file():
        fail(f"checkpoint {path} does not exist.")
    _check_format(path)
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
    check_finite(tensors, path)
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        name = key.removeprefix("module.")
        if name in state:  # which copy is the model's cannot be told, and either could be loaded silently
            fail(
                f"{path} holds two tensors for the parameter {name!r} ({name} and module.{name}); the file mixes "
                f"two models' weights, so save one state dict and load that."
            )
        state[name] = value
    return state


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or infinite values: such a model restores every image to garbage."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        fail(
            f"{path} holds NaN or infinite values in {len(bad)} tensor(s) ({_summarise(bad)}); the file is damaged "
            f"or comes from a diverged training run, so use an earlier checkpoint."
        )


def is_int(value) -> bool:
    """An int that is not a bool (JSON and pickles give both)."""
    return isinstance(value, int) and not isinstance(value, bool)


def config_problems(config: HINetConfig) -> list[str]:
    """What is wrong with an architecture's values, before anything is built (empty if nothing)."""
    c, problems = config, []
    if c.in_chn != 3:
        problems.append(f"in_chn {c.in_chn!r} (this project restores 3-channel RGB images)")
    if not (is_int(c.wf) and 1 <= c.wf <= MAX_WF):
        problems.append(f"wf {c.wf!r} (a width from 1 to {MAX_WF})")
    if not (is_int(c.depth) and 1 <= c.depth <= MAX_DEPTH):
        problems.append(f"depth {c.depth!r} (from 1 to {MAX_DEPTH} levels)")
    slope = c.relu_slope
    if not (isinstance(slope, (int, float)) and not isinstance(slope, bool) and 0 <= slope < 1):
        problems.append(f"relu_slope {slope!r} (from 0 up to, not including, 1)")
    for name in ("hin_position_left", "hin_position_right"):
        value = getattr(c, name)
        if not (is_int(value) and 0 <= value <= MAX_DEPTH):
            problems.append(f"{name} {value!r} (a level from 0 to {MAX_DEPTH})")
    if c.output not in OUTPUTS:
        problems.append(f"output {c.output!r} (one of {', '.join(OUTPUTS)})")
    return problems


def img_size_problem(size) -> str | None:
    """Why a stored training patch size cannot be right (None if it can): the tile size test.py takes from it
    (any size: the model pads itself to its size multiple)."""
    if not (is_int(size) and 1 <= size <= MAX_IMG_SIZE):
        return f"img_size {size!r}, not a patch size from 1 to {MAX_IMG_SIZE}"
    return None


def check_architecture(state: dict[str, torch.Tensor], config: HINetConfig, path: str | Path) -> None:
    """Refuse, before any memory is allocated, an architecture out of range, too large or unlike the tensors.

    The model is built on the ``meta`` device (shapes only, no storage) to count its
    parameters and compare their names and shapes with the file's tensors.
    """
    problems = config_problems(config)
    if problems:
        fail(f"{path} states an impossible architecture: {', '.join(problems)}; the file is damaged or not a HINet.")
    try:
        with torch.device("meta"):
            model = HINet(config)
    except (TypeError, ValueError, RuntimeError) as err:
        fail(f"{path} stores an invalid model configuration {config} ({one_line(err)}).")
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        held = sum(v.numel() for v in state.values())
        fail(
            f"{path} states an architecture of {count:,} parameters (wf {config.wf}, depth {config.depth}), more "
            f"than the {MAX_PARAMETERS:,} any usable HINet has, while its tensors hold {held:,} values; the file is "
            f"damaged or crafted."
        )
    check_matches(model, state, path)


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
    check_matches(model, state, path)
    model.load_state_dict(state, strict=True)


def check_matches(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Fail with a one-sentence summary unless ``state`` has exactly the model's names and shapes, and
    floating-point numbers wherever the model has them."""
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
    check_types(own, state, path)


def check_types(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse whole-number (or boolean, or complex) tensors where the model holds floating-point ones:
    ``load_state_dict`` would copy them without a word, and the model would restore with weights cut to
    whole numbers, not the ones it was trained with."""
    for key, value in own.items():
        if value.is_floating_point() and not state[key].is_floating_point():
            fail(
                f"{path} stores the parameter {key!r} as {str(state[key].dtype).removeprefix('torch.')}, not as "
                f"floating-point numbers; the file was converted or damaged, so use the checkpoint main.py saved."
            )


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
    except (TypeError, ValueError) as err:
        fail(f"{path} stores an invalid model configuration {config} ({one_line(err)}).")
    check_architecture(state, config, path)  # before the model takes any memory
    if "img_size" in ckpt and (problem := img_size_problem(ckpt["img_size"])):
        fail(f"{path} states a training {problem}; the file is damaged or was edited.")
    model = HINet(config)
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


def save_checkpoint(obj: dict, path: str | Path, then: str = "run again") -> None:
    """Save atomically: a crash mid-write leaves any previous file intact; a failed write (a full disk) is one
    sentence that ends with ``then``."""
    with reported_write(path, then), atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # torch's own writer reports a failed write without its cause
            if "inline_container" not in str(err) and "PytorchStreamWriter" not in str(err):
                raise
            raise OSError(errno.EIO, "the checkpoint writer failed, most likely for lack of disk space") from err


def stored_patch_size(path: str | Path) -> int | None:
    """The patch size a project checkpoint was trained on, read without loading its tensors; None if absent."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # the same file, read fully, gets the one-sentence reason
        read_checkpoint(path)
        return None
    if not isinstance(ckpt, dict) or "img_size" not in ckpt:
        return None
    size = ckpt["img_size"]
    if (problem := img_size_problem(size)) is not None:
        fail(f"{path} states a training {problem}; the file is damaged or was edited.")
    return size


def pack_checkpoint(src: str | Path | dict, dst: str | Path, card: dict) -> None:
    """A trained checkpoint (a file, or one ``average_checkpoints`` made) as a file to ship: its weights in half
    precision, its architecture, patch size and run settings, and ``card`` (how it was made). Half the size of
    float32; ``load_model`` reads it back into a float32 model, whose outputs then differ by about 1e-3 at most."""
    ckpt, name = (src, "the averaged checkpoint") if isinstance(src, dict) else (read_checkpoint(src), src)
    state = extract_state_dict(ckpt, name)
    if not isinstance(ckpt.get("model_config"), dict) or "img_size" not in ckpt:
        fail(f"{name} is not a checkpoint of main.py (no model_config and img_size); pack a run's <size>_best.pth.")
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    check_finite(half, f"{dst} in half precision")
    packed = {"state_dict": half, "model_config": ckpt["model_config"], "img_size": ckpt["img_size"],
              "epoch": ckpt.get("epoch"), "config": ckpt.get("config", {}), "card": card}  # fmt: skip
    save_checkpoint(packed, dst)


def average_checkpoints(base: str | Path, tuned: str | Path, share: float) -> dict:
    """``tuned`` (a main.py checkpoint fine-tuned from ``base``) with its weights moved back towards ``base``:
    ``(1 - share) * base + share * tuned``, for ``pack_checkpoint``. Averaging a fine-tuned model with the model
    it started from keeps much of what the fine-tune taught and less of what it cost (weight-space ensembling,
    as WiSE-FT); both must be the same architecture."""
    if not 0 <= share <= 1:
        raise ValueError(f"share must be within 0 and 1, got {share}")
    base_ckpt, tuned_ckpt = read_checkpoint(base), read_checkpoint(tuned)
    base_state, tuned_state = extract_state_dict(base_ckpt, base), extract_state_dict(tuned_ckpt, tuned)
    shapes = {k: tuple(v.shape) for k, v in tuned_state.items()}
    configs = [c.get("model_config") for c in (base_ckpt, tuned_ckpt)]
    if {k: tuple(v.shape) for k, v in base_state.items()} != shapes or (
        None not in configs and configs[0] != configs[1]
    ):
        fail(f"{tuned} and {base} are not the same architecture; average a checkpoint with the one it started from.")
    state = {
        k: base_state[k].float().lerp(v.float(), share) if v.is_floating_point() else v for k, v in tuned_state.items()
    }
    return tuned_ckpt | {"state_dict": state}

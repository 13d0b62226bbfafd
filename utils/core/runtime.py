"""Seeding, device choice and mixed precision."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from utils.core.errors import fail


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def choose_device(name: str | None = None) -> torch.device:
    """CUDA when available, else the CPU; ``name`` (``cpu``, ``cuda``, ``cuda:1``) overrides."""
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        fail(f"--device {name!r} is not supported; use auto, cpu, cuda or cuda:N.")
    if device.type == "cuda" and not torch.cuda.is_available():
        fail(f"--device {name} was asked for but CUDA is not available here; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        fail(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0.")
    return device


def amp_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the hardware supports it, else fp16 (CUDA) ; bf16 on CPUs."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the forward pass, or a no-op."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matrix products and convolutions (PyTorch itself allows it for convolutions by default)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def configure_cuda(device: torch.device) -> None:
    """Fast CUDA defaults that leave CPU results alone: cuDNN picks the fastest kernels for the fixed tile
    and patch shapes (``cudnn.benchmark``); convolutions keep PyTorch's TF32 default."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict:
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))

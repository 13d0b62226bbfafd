"""What a run's log says before its first epoch: the data, the settings, and the score to beat."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from utils.data.images import read_rgb
from utils.data.layout import INFO_FILE
from utils.metrics import psnr_uint8

if TYPE_CHECKING:
    from utils.train.trainer import Run


def log_start(run: Run, resumed: bool, resume_notes: list[str], model_note: str) -> None:
    """The run's opening lines, so that a log read later says what was trained on what, and from where."""
    cfg, d, log = run.cfg, run.d, run.logger
    if cfg.amp and run.device.type == "cpu":
        log.info("--amp on the CPU uses bf16 autocast")
    info_file = cfg.patch_dir / INFO_FILE
    patches = json.loads(info_file.read_text())["patches_per_crop"] if info_file.is_file() else "no patch_info.json"
    backend = f" ({d.backend})" if d.backend else ""
    log.info(
        f"run {cfg.exp_dir}: {len(run.train_pairs)} training patches {patches}, {len(run.val_pairs)} validation "
        f"images, {d.world} process(es) on {run.device}{backend}"
    )
    log.info("config: " + json.dumps(asdict(cfg)))
    for note in resume_notes:
        log.info(note)
    if not resumed and cfg.epochs <= 6:
        log.warning(
            f"epoch 1 trains at learning rate 0 (the 3-epoch warm-up starts at 0, as the original did); "
            f"with --epochs {cfg.epochs} that is a large share of the run"
        )
    if d.main:
        log.info(baseline_note([psnr_uint8(read_rgb(p.input), read_rgb(p.target)) for p in run.val_pairs]))
    (log.warning if "not found" in model_note else log.info)(model_note)


def baseline_note(scores: list[float]) -> str:
    """The unrestored inputs' PSNR, over the pairs that have flare: a flare-free pair (``--clean_share``) has its
    input equal to its target, an infinite PSNR that would make the mean meaningless."""
    finite = [s for s in scores if np.isfinite(s)]
    clean = len(scores) - len(finite)
    if not finite:
        return f"validation: all {clean} pairs are flare-free (input equals target), no score to beat"
    note = f"validation PSNR of the unrestored inputs: {np.mean(finite):.4f} dB (the score to beat)"
    return note + (f", over {len(finite)} pairs with flare; {clean} flare-free pairs left out" if clean else "")

"""Before a run starts: its patches, validation images, folder, locks and starting weights, each checked in one sentence."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import torch

from models.checkpoint import extract_state_dict, infer_config, read_checkpoint
from utils.core.errors import UserError, fail
from utils.core.locks import output_lock
from utils.core.owned import Output, check_output
from utils.data.copies import all_identical
from utils.data.folds import Pair, held_out_pairs, patch_pairs, read_fold_csv
from utils.data.headers import header_size
from utils.data.layout import FOLD_CSV, INFO_FILE
from utils.train.config import TrainConfig


class PatchProblem(UserError):
    """The patch folder is missing or does not fit this run. The message ends where the make_patch.py
    command that mends it belongs; the command-line script adds it (``folds``: a --folds to add;
    ``overwrite``: the command replaces a patch folder that is there)."""

    def __init__(self, message: str, folds: int | None = None, overwrite: bool = True) -> None:
        super().__init__(message)
        self.folds, self.overwrite = folds, overwrite


def check_data(cfg: TrainConfig, world: int) -> tuple[list[Pair], list[Pair]]:
    """Patch pairs for training and full-size pairs for validation, with one-sentence errors."""
    if not (cfg.patch_dir / "input").is_dir() or not (cfg.patch_dir / "target").is_dir():
        raise PatchProblem(
            f"no patch folder {cfg.patch_dir}/input and /target for size {cfg.img_size}, fold {cfg.fold}; create it with:",
            overwrite=False,
        )
    original = Path(cfg.data_path) / "train_original"
    folds = read_fold_csv(original / FOLD_CSV)
    check_patch_info(cfg, folds)
    train = patch_pairs(cfg.patch_dir / "input", cfg.patch_dir / "target", folds, cfg.fold)
    square = (cfg.img_size, cfg.img_size)  # upright or not: the header alone, cheap for a large patch set
    odd = next((p.input for p in train if header_size(p.input) != square), None)
    if odd is not None:
        h, w = header_size(odd) or (0, 0)
        raise PatchProblem(f"patch {odd} is {w}x{h}, not {cfg.img_size}x{cfg.img_size}; re-make the patches with:")
    if all_identical((p.input, p.target) for p in train):  # the first differing pair ends the check
        raise PatchProblem(
            f"every target patch in {cfg.patch_dir} is identical to its input patch (e.g. {train[0].target.name}), "
            f"so training would teach the model to change nothing; check that train_label_img holds the clean "
            f"images, then re-make the patches with:"
        )
    val = held_out_pairs(folds, original, cfg.fold)
    missing = [str(p.input) for p in val if not p.input.is_file()] + [
        str(p.target) for p in val if not p.target.is_file()
    ]
    if missing:
        fail(f"{len(missing)} validation image(s) of fold {cfg.fold} are missing, e.g. {missing[0]}.")
    if not val:
        fail(f"fold {cfg.fold} has no validation images in {original / FOLD_CSV}.")
    if cfg.batch_size % world:
        fail(f"--batch_size {cfg.batch_size} is the global batch and must divide by the {world} processes.")
    return train, val


def check_patch_info(cfg: TrainConfig, folds) -> None:
    """The patch folder must come from the fold split now on disk, for this fold and size."""
    info_file = cfg.patch_dir / INFO_FILE
    if not info_file.is_file():
        return  # patches of an earlier release: the name-based pairing still guards against leaks
    try:
        made = json.loads(info_file.read_text())["settings"]
    except (ValueError, KeyError, TypeError):
        raise PatchProblem(f"{info_file} is damaged; re-make the patches with:") from None
    now = {"folds": int(folds["fold"].max()) + 1, "valid_fold": cfg.fold, "resize": cfg.img_size}
    differ = [f"{k} {made.get(k)} (now {v})" for k, v in now.items() if made.get(k) != v]
    if differ:
        raise PatchProblem(
            f"the patches in {cfg.patch_dir} were made with {', '.join(differ)}; validation images could be in "
            f"training, so re-make them with:",
            folds=now["folds"],
        )


def resolve_pretrained(cfg: TrainConfig, explicit: bool) -> tuple[str | None, str | None]:
    """(weights to start from or None, note for the log); a path the user gave must exist."""
    path = cfg.pretrained_path
    if not path or str(path).lower() == "none":
        return None, "starting from random weights (no --pretrained_path)"
    if not Path(path).is_file():
        if explicit:
            fail(f"--pretrained_path {path} does not exist; pass the path of HINet-GoPro.pth, or 'none'.")
        return None, f"{path} not found: starting from random weights (put HINet-GoPro.pth there to fine-tune it)"
    return path, f"initialised from {path}"


ARCHITECTURE = ("wf", "depth", "output")  # what fine-tuning takes from the checkpoint


def adopt_architecture(cfg: TrainConfig, pretrained: str, given: set[str]) -> dict[str, torch.Tensor]:
    """Fine-tuning: the run's width, depth and output become the checkpoint's (stated, or seen in its tensors);
    a flag that asks for another value is refused. Returns the weights to start from."""
    ckpt = read_checkpoint(pretrained)
    state = extract_state_dict(ckpt, pretrained)
    stored = ckpt.get("model_config")
    if not isinstance(stored, dict):  # the public release: width and depth from the tensors, the default output
        inferred = infer_config(state, pretrained)
        stored = {"wf": inferred.wf, "depth": inferred.depth}
    clashes = [f"--{k} {getattr(cfg, k)} (it has {stored[k]})" for k in ARCHITECTURE
               if k in given and k in stored and getattr(cfg, k) != stored[k]]  # fmt: skip
    if clashes:
        fail(f"--pretrained_path {pretrained} is another architecture: {', '.join(clashes)}; drop those flags to "
             f"fine-tune it as it is, or pass --pretrained_path none to train that architecture from scratch.")  # fmt: skip
    for k in ARCHITECTURE:
        if k in stored:
            setattr(cfg, k, stored[k])
    return state


def starting_weights(cfg: TrainConfig, given: set[str]) -> tuple[dict[str, torch.Tensor] | None, str]:
    """(weights to fine-tune from or None, note for the log); a new run takes the checkpoint's architecture."""
    if cfg.resume:
        return None, ""
    pretrained, note = resolve_pretrained(cfg, "pretrained_path" in given)
    return (adopt_architecture(cfg, pretrained, given) if pretrained is not None else None), note


def check_run_folder(cfg: TrainConfig) -> None:
    """Before any work: a new run may go to its folder (a resumed one must hold nothing but what it wrote)."""
    exp = cfg.exp_dir
    if cfg.resume:  # a resumed run writes in place: a link there would carry its writes elsewhere
        linked = next((p for p in map(exp.joinpath, run_files(cfg.img_size)) if _is_link(p)), None)
        if linked is not None:
            fail(f"--resume: {linked} is a link to another file; the run writes there, so put a copy in its place.")
        return
    if (exp / "last.pth").is_file() and not cfg.overwrite:
        fail(
            f"{exp} already holds a run; pass --resume to continue it, --overwrite to replace it, or another --exp_num."
        )
    check_output(run_output(cfg))


def run_output(cfg: TrainConfig) -> Output:
    """The run folder as an owned output: put in place with its log and epoch-0 checkpoint, then written in place."""
    protected = {"patch folder": cfg.patch_dir, "data folder": Path(cfg.data_path) / "train_original"}
    return Output(cfg.exp_dir, "run", "run folder", "main.py", cfg.overwrite, protected)


def run_files(img_size: int) -> list[str]:
    """What a run writes into its folder, each file replaced or appended in place while it runs."""
    return ["log.log", "metrics.csv", "curves.png", "last.pth", f"{img_size}_best.pth"]


def _is_link(path: Path) -> bool:
    return path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1)


def hold_run_locks(stack: ExitStack, cfg: TrainConfig) -> None:
    """The patches and fold table the run reads, shared, for the whole run; a resumed run's folder, exclusively
    (a new run's folder is locked by ``owned_output`` as it is made, and stays locked with ``stack``)."""
    if cfg.resume:
        stack.enter_context(output_lock(cfg.exp_dir, "run folder"))
    stack.enter_context(output_lock(cfg.patch_dir, "patch folder", shared=True))
    stack.enter_context(output_lock(Path(cfg.data_path) / "train_original" / FOLD_CSV, "fold table", shared=True))

"""Train the starter model that ``pretrained/`` ships, with the project's own commands, in one go.

    python -m scripts.starter --profile gpu     # one H100/H200: the _gpu file (ten times the data, bf16)
    python -m scripts.starter --profile finish  # two cores, 20 minutes: the _gpu file finished, the shipped starter
    python -m scripts.starter                   # the CPU profile: two cores, under two hours (the _cpu file)

Generates synthetic flare pairs (``scripts.flare_data``; its held-out test photographs are
never trained on), cuts the 256 recipe's patches (brightness-selected crops plus larger crops
resized down), trains with ``main.py`` (adaptive augmentation; the linear output; the CPU
profile fine-tunes the earlier starter, ``pretrained/hinet_flare_starter_v2.pth``, the finish profile
the GPU profile's model), packs the best checkpoint (the finish profile: its last epoch averaged with
the weights it started from) into ``--output`` with half-precision tensors, and scores it on the held-out
pairs (``test.py --eval_dir``, ``scripts.flare_eval``), with and without ``--keep_lights``.
Everything but the packed checkpoint goes to ``--root``; the commands are printed as they run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from models.checkpoint import REPO, STARTER, average_checkpoints, pack_checkpoint, read_checkpoint
from scripts.commands import run
from scripts.demo import Sheet, comparison
from utils.core.cli import run_cli
from utils.core.errors import UserError
from utils.core.owned import Output, check_output, owned_output
from utils.infer.photo_check import lamp_window
from utils.presets import PRESETS, preset_flags

# hardware profile -> its preset: "cpu", 2 CPU cores (about 4 training samples a second); "gpu", one H100/H200 with 16
# cores (a wider, deeper model on ten times the pairs, in bf16); "finish", the GPU's model fine-tuned on 2 CPU cores
PROFILES = {"cpu": "starter-cpu", "gpu": "starter-gpu", "finish": "starter-finish"}
# where each profile's model goes: the finished one is the shipped starter, the others the files beside it
OUTPUTS = {"cpu": STARTER.with_name("hinet_flare_starter_cpu.pth"),
           "gpu": STARTER.with_name("hinet_flare_starter_gpu.pth"), "finish": STARTER}  # fmt: skip
# profile -> the share of its last epoch's weights in the packed model, the rest its starting weights': alone, the
# finish's lamp-core loss keeps the lamps but costs the streaks; halfway keeps both (pretrained/README.md)
AVERAGED = {"finish": 0.5}


def commands(preset: str, root: Path, device: str, changes: dict[str, dict] | None = None) -> list[list[str]]:
    """The data, patch and training commands of a profile, as a user would type them; ``changes`` (script ->
    settings) replace the preset's own, as bench.gpu_session does to fit a time limit."""
    py, train, changes = sys.executable, root / "train_original", changes or {}
    paths = {"input_path": train / "train_input_img", "target_path": train / "train_label_img", "csv_path": train,
             "save_path": root, "overwrite": True, "progress": False}  # fmt: skip
    run = {"data_path": root, "model_path": root / "runs", "exp_num": 1, "device": device, "overwrite": True,
           "progress": False}  # fmt: skip
    data = {"root": root, "overwrite": True, "progress": False}
    scripts = {"scripts.flare_data": data, "make_patch.py": paths, "main.py": run}
    return [
        [py, *(["-m"] if script.startswith("scripts.") else []), script,
         *preset_flags(preset, script, values | changes.get(script, {}))]
        for script, values in scripts.items()
    ]  # fmt: skip


def evaluate(preset: str, weights: Path, root: Path, device: str) -> None:
    """Held-out scores of the packed checkpoint, without and with --keep_lights."""
    py = sys.executable
    for name, extra in (("restored", []), ("restored_keep_lights", ["--keep_lights"])):
        out = root / "eval" / name
        where = {"weights": (weights,), "input_dir": root / "test_input_img", "eval_dir": root / "test_label_img",
                 "output_dir": out, "device": device, "make_zip": False, "overwrite": True, "progress": False}  # fmt: skip
        run([py, "test.py", *preset_flags(preset, "test.py", where), *extra])
        run([py, "-m", "scripts.flare_eval", "--data", str(root), "--submission", str(out), "--weights", str(weights),
             "--out", str(root / "eval" / f"{name}_clean"), "--clean_goal", "38", *extra])  # fmt: skip


def starter_card(profile: str, minutes: float, changes: dict[str, dict] | None = None) -> dict:
    """How a packed starter was made: the profile, its preset's settings (with ``changes``, script -> settings,
    in place of the preset's own) and the minutes of data and training."""
    preset = PRESETS[PROFILES[profile]]
    changed = {k: v for c in (changes or {}).values() for k, v in c.items()}
    averaged = {"averaged": AVERAGED[profile]} if profile in AVERAGED else {}
    return {"profile": profile, "preset": PROFILES[profile], **preset.data, **preset.patches, **preset.training,
            **changed, **averaged, "minutes": round(minutes, 1)}  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=PROFILES, default="cpu",
                   help="hardware profile: cpu, gpu, or finish (the gpu profile's model fine-tuned on two CPU cores; "
                   "default cpu)")  # fmt: skip
    p.add_argument("--root", default="data/starter", help="data, patches, runs and scores (default data/starter)")
    p.add_argument("--output", help="the packed checkpoint (default: the profile's file, "
                   + ", ".join(f"{k} {v}" for k, v in OUTPUTS.items()) + ")")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    return p.parse_args(argv)


def start_weights(preset: str) -> Path | None:
    """The weights a profile's training starts from, None for random weights (the preset's path is relative
    to the repository, where ``python -m scripts.starter`` runs)."""
    start = PRESETS[preset].training.get("pretrained_path", "none")
    return None if start == "none" else REPO / start


def packed_model(output: Path, overwrite: bool, start: Path | None = None) -> Output:
    """``--output``: checked before the first command of a pipeline of hours, written only at its end, and
    replaced only with ``--overwrite`` and only if this command packed it (its model card says so); never the
    weights the training starts from (``start``)."""
    protected = {"starting weights": start} if start else {}
    return Output(output, "a model this command packed", "--output", "scripts.starter", overwrite, protected, _has_card)


def trained_weights(profile: str, run: Path, start: Path | None) -> Path | dict:
    """What a profile packs: the run's best epoch, or its last averaged with ``start`` (``AVERAGED``; kept in
    memory, so that the run folder holds only what main.py wrote there)."""
    if profile not in AVERAGED:
        return run / "256_best.pth"
    if start is None:
        raise ValueError(f"the {profile} profile averages with its starting weights, and its preset has none")
    return average_checkpoints(start, run / "last.pth", AVERAGED[profile])


def _has_card(path: Path) -> bool:
    try:
        return "card" in read_checkpoint(path)
    except UserError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile, root, output = PROFILES[args.profile], Path(args.root), Path(args.output or OUTPUTS[args.profile])
    start_from = start_weights(profile)
    check_output(packed_model(output, args.overwrite, start_from))
    start = time.time()
    for cmd in commands(profile, root, args.device):
        run(cmd)
    minutes = (time.time() - start) / 60
    card = starter_card(args.profile, minutes)
    with owned_output(packed_model(output, args.overwrite, start_from)) as packed:
        pack_checkpoint(trained_weights(args.profile, root / "runs" / "001", start_from), packed, card)
    print(f"\n{output}: {output.stat().st_size / 2**20:.1f} MiB, data and training in {minutes:.1f} min")
    evaluate(profile, output, root, args.device)
    sheet = Sheet(model="starter", target="target", lamp_crop=lamp_window, width=3.0)
    comparison(root, root / "eval" / "restored", Path("sample") / "starter_comparison.png", sheet)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

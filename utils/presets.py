"""Named presets: the settings the demo, the starter and the ablation study give the pipeline scripts.

A preset names, per pipeline script, the settings it sets (by their field names in the settings
classes, so each is checked and documented where it is defined). The helper commands build their
commands from it, ``python -m scripts.presets`` prints it, and a test checks that the two agree.
What a helper varies from run to run (folders, run numbers, the size a model trains at, the
seed) stays in the helper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from utils.core.settings import as_flags
from utils.data.patch_settings import PATCH_SETTINGS
from utils.flare.data_settings import FlareDataSettings
from utils.infer.options import INFERENCE_SETTINGS
from utils.photo.settings import PHOTO_SETTINGS
from utils.train.config import TrainConfig

SCRIPT_SETTINGS = {
    "make_patch.py": PATCH_SETTINGS,
    "main.py": (TrainConfig,),
    "test.py": INFERENCE_SETTINGS,
    "scripts.flare_data": (FlareDataSettings,),
    "restore.py": PHOTO_SETTINGS,
}


@dataclass(frozen=True)
class Preset:
    """What one helper command changes from the defaults of scripts.flare_data, make_patch.py, main.py and test.py."""

    about: str
    data: dict[str, Any] = field(default_factory=dict)  # scripts.flare_data
    patches: dict[str, Any] = field(default_factory=dict)  # make_patch.py
    training: dict[str, Any] = field(default_factory=dict)  # main.py
    inference: dict[str, Any] = field(default_factory=dict)  # test.py

    def settings(self) -> dict[str, dict[str, Any]]:
        """Script -> the settings this preset gives it."""
        return {
            "scripts.flare_data": self.data,
            "make_patch.py": self.patches,
            "main.py": self.training,
            "test.py": self.inference,
        }


# Small models from random weights (none can be fetched here), without the original's restart; the linear output,
# since small sigmoid models on dark night scenes often collapse to a black image.
_SMALL = {"output": "linear", "restart_epoch": 0, "pretrained_path": "none"}
STARTER_V2 = "pretrained/hinet_flare_starter_v2.pth"  # the earlier starter, which the CPU profile fine-tunes
STARTER_GPU = "pretrained/hinet_flare_starter_gpu.pth"  # the GPU profile's model, which the finish profile fine-tunes
_STARTER = {"img_size": 256, "stride": 128, "resize": 256}  # the 256 recipe's patches
# Night phone photos: more photographs, phone flare (street lamps, long streaks, large glows) and the night camera
# (exposure, colour cast, noise, JPEG alike on input and target); a quarter of the pairs without flare.
_NIGHT_PHOTOS = {"masks": True, "clean_share": 0.25, "more_photos": True, "phone_flare": True, "night": True}
# The two-core profiles' data: 160 training pairs and the 16 held-out test pairs every starter is scored on
_CPU_DATA = _NIGHT_PHOTOS | {"train_count": 160, "test_count": 16, "height": 768, "width": 1024, "psf_count": 64,
                             "workers": 2}  # fmt: skip
_CPU_PATCHES = _STARTER | {"folds": 20, "process_num": 2}
# Where the target is the input (away from the flare), the output should be the input too: the clean-region loss;
# near the lamps, where a small model greys them and overshoots, the near-light loss.
_STARTER_TRAINING = _SMALL | {"img_size": 256, "min_lr": 1e-6, "patience": 1000, "tag": "starter", "clean_weight": 0.2,
                              "light_weight": 0.5}  # fmt: skip

PRESETS = {
    # Depth 4, not 3: a fourth level doubles what a pixel sees, which glare halos need (+2.35 dB for the 256 model
    # on the demo's test set, for 12% more training time). The 352 model continues from the 256 one (scripts.demo).
    "demo": Preset(
        "make demo: the 256 and 352 models on the demo set, two CPU cores, minutes; test.py's second run "
        "(the first keeps the original's settings)",
        # 12 training and 4 test pairs of 576x768, from a bank of 16 PSFs (each pair draws one: 16 pairs need no
        # more; 20 s instead of a minute and a half for 64); a quarter of the training pairs have no flare, so
        # that a lamp alone is kept (2.2 dB better on clean pictures, docs/results.md)
        data={"psf_count": 16, "masks": True, "clean_share": 0.25},
        patches={"process_num": 2},
        training={
            "wf": 8,
            "depth": 4,
            "output": "linear",
            "batch_size": 4,
            "min_lr": 1e-5,
            "restart_epoch": 0,
            "patience": 1000,
            "num_workers": 2,
            "tag": "demo",
        },
        inference={"blend": "window", "fit_weights": True},
    ),
    "starter-cpu": Preset(
        "python -m scripts.starter --profile cpu: the earlier starter model (_cpu), two CPU cores, under two hours",
        data=_CPU_DATA,
        patches=_CPU_PATCHES,
        # Fine-tuned from the earlier starter (itself fine-tuned from the first, pretrained/README.md), with the
        # near-light loss: lamps 89% -> 94.5% of their brightness, the error near the lights 24.9 -> 22.9 levels
        training=_STARTER_TRAINING
        | {
            "pretrained_path": STARTER_V2,
            "wf": 12,
            "depth": 4,
            "batch_size": 8,
            "steps_per_epoch": 40,
            "epochs": 7,
            "initial_lr": 3e-4,
            "num_workers": 2,
        },
        inference={"blend": "window"},
    ),
    "starter-gpu": Preset(
        "python -m scripts.starter --profile gpu: a wider, deeper starter on ten times the pairs, one H100/H200, bf16",
        # 768x1024 like the CPU profile: the size of the copy restore.py shows the model, so the flare it learns
        # has the size it meets in photos. Width 16, depth 5: a fifth level doubles what a pixel sees (large glows,
        # long streaks), and a 12-megapixel photo still takes well under a minute on two CPU cores.
        data=_NIGHT_PHOTOS
        | {"train_count": 1600, "test_count": 32, "height": 768, "width": 1024, "psf_count": 256, "workers": 12},
        patches=_STARTER | {"folds": 80, "process_num": 12},
        training=_STARTER_TRAINING
        | {
            "wf": 16,
            "depth": 5,
            "batch_size": 32,
            "steps_per_epoch": 275,
            "epochs": 16,
            "initial_lr": 5e-4,
            "num_workers": 12,
            "amp": True,
        },
        inference={"blend": "window"},
    ),
    "starter-finish": Preset(
        "python -m scripts.starter --profile finish: the shipped starter, the GPU profile's model finished on two "
        "CPU cores in about 20 minutes",
        data=_CPU_DATA,
        patches=_CPU_PATCHES,
        # The lamp-core loss on the CPU profile's pairs at a fifth of the GPU's peak rate; scripts.starter then
        # averages the last epoch's weights with the starting ones (pretrained/README.md)
        training=_STARTER_TRAINING
        | {
            "pretrained_path": STARTER_GPU,
            "wf": 16,
            "depth": 5,
            "core_weight": 1.0,
            "batch_size": 8,
            "steps_per_epoch": 40,
            "epochs": 6,
            "initial_lr": 1e-4,
            "num_workers": 2,
        },
        inference={"blend": "window"},
    ),
    "ablation": Preset(
        "python -m scripts.ablation: every variant's run, with the study's default settings (its flags change "
        "epochs, steps_per_epoch, batch_size, wf, depth, output, initial_lr and min_lr)",
        data={"psf_count": 16, "masks": True},  # the demo's set before it had flare-free pairs (docs/ablation.md)
        patches={"process_num": 2},
        training=_SMALL
        | {
            "epochs": 10,
            "steps_per_epoch": 20,
            "batch_size": 2,
            "wf": 4,
            "depth": 3,
            "initial_lr": 1e-3,
            "min_lr": 1e-5,
            "num_workers": 0,
            "tag": "ablation",
        },
    ),
}


def command_words(script: str) -> list[str]:
    """How ``python`` starts ``script``: a file, or a module with ``-m``."""
    return [script] if script.endswith(".py") else ["-m", script]


def preset_flags(name: str, script: str, values: dict[str, Any] | None = None) -> list[str]:
    """The flags preset ``name`` gives ``script``, with ``values`` (setting -> value) in place of its own."""
    own = PRESETS[name].settings()[script]
    return as_flags(SCRIPT_SETTINGS[script], own | (values or {}))

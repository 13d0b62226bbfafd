"""The presets that python -m scripts.presets prints are what the demo, the starter and the ablation study run."""

from pathlib import Path
from types import SimpleNamespace

import pytest

import main as train_script
import make_patch
from conftest import load_script
from scripts import ablation, ablation_runs, demo, flare_data, presets, starter
from scripts.ablation_plan import StudySettings, training_variants
from utils.presets import PRESETS

PARSERS = {"make_patch.py": make_patch.parse_args, "main.py": train_script.parse_args,
           "scripts.flare_data": flare_data.parse_args}  # fmt: skip


class Stop(Exception):
    """Ends a helper after it has handed over its command."""


def demo_commands(monkeypatch) -> list[list[str]]:
    commands = []
    monkeypatch.setattr(demo, "run", lambda cmd, **_: commands.append([str(c) for c in cmd[1:]]))
    for name in ("check_ownership", "install_checkpoint", "comparison", "print_comparison"):
        monkeypatch.setattr(demo, name, lambda *a, **k: None)
    demo.main([])
    return commands


def starter_commands(profile: str, monkeypatch) -> list[list[str]]:
    commands = []
    monkeypatch.setattr(starter, "run", lambda cmd, **_: commands.append([str(c) for c in cmd[1:]]))
    p, root = starter.PROFILES[profile], Path("data/starter")
    starter.evaluate(p, root / "m.pth", root, "cpu")
    return [[str(c) for c in cmd[1:]] for cmd in starter.commands(p, root, "cpu")] + commands


def ablation_commands(tmp_path, monkeypatch) -> list[list[str]]:
    commands = []
    monkeypatch.setattr(ablation, "run", lambda cmd, **_: commands.append([str(c) for c in cmd[1:]]))
    ablation.ensure_data(tmp_path / "data", "python")  # no data there: the study's set is generated

    def command(script, *flags, **_):
        commands.append([script, *flags])
        raise Stop

    study = SimpleNamespace(settings=StudySettings(), data=tmp_path / "data", out=tmp_path / "study", command=command)
    variant = training_variants((), ())[0]
    for call in (lambda: ablation_runs.make_patches(study, variant),
                 lambda: ablation_runs.train_run(study, variant, 1, tmp_path / "run", resume=False)):  # fmt: skip
        with pytest.raises(Stop):
            call()
    return commands


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_printed_preset_is_what_its_helper_runs(name, monkeypatch, tmp_path):
    """Each printed ``python <script> <flags>`` line begins a command the helper runs, and the script, parsing
    that command, gets every value of the preset (the demo also runs test.py with the original's settings)."""
    if name == "demo":
        commands = demo_commands(monkeypatch)
    elif name.startswith("starter-"):
        commands = starter_commands(name.removeprefix("starter-"), monkeypatch)
    else:
        commands = ablation_commands(tmp_path, monkeypatch)
    parsers = dict(PARSERS, **{"test.py": load_script("test").parse_args})
    printed = [line.split()[1:] for line in presets.preset_lines(name)[1:]]  # without "python"
    printed = [words[1:] if words[0] == "-m" else words for words in printed]  # a module: as the scripts' name
    commands = [c[1:] if c[0] == "-m" else c for c in commands]
    for script, *flags in printed:
        ran = [c[1:] for c in commands if c[0] == script and c[1 : len(flags) + 1] == flags]
        assert ran, (script, flags, commands)
        for words in ran:
            args = parsers[script](words)
            for setting, value in PRESETS[name].settings()[script].items():
                got = getattr(args, setting)
                assert (tuple(got) if isinstance(got, list) else got) == value, (script, setting)
    assert {script for script, *_ in printed} == {s for s, values in PRESETS[name].settings().items() if values}


def test_the_presets_command_prints_lines_and_tables(capsys):
    assert presets.main([]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}: " in out for name in PRESETS)
    assert presets.main(["starter-gpu", "--table"]) == 0
    table = capsys.readouterr().out
    assert "| main.py | `--amp` | on | off |" in table and "| make_patch.py | `--folds` | 80 | 10 |" in table

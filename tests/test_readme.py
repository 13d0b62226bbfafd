"""Every command the README shows must parse: scripts exist and every flag is known."""

import re
import shlex

import pytest

import main as train_script
import make_patch
from conftest import ROOT, load_script
from scripts import readme_tables

SCRIPTS = {"make_patch.py": make_patch.parse_args, "main.py": train_script.parse_args}


def _commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            for part in line.split(";"):
                words = shlex.split(part)
                if words[:1] == ["torchrun"]:  # check the script's own flags
                    script = next(i for i, w in enumerate(words) if w.endswith(".py"))
                    words = ["python"] + words[script:]
                if words[:1] == ["python"] and len(words) > 1:
                    commands.append(words[1:])
    return commands


def test_readme_has_the_pipeline_commands():
    scripts = [c[0] for c in _commands()]
    for needed in ("make_patch.py", "main.py", "test.py", "-m"):
        assert needed in scripts


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c)[:60])
def test_readme_command_parses(command):
    parsers = dict(SCRIPTS, **{"test.py": load_script("test").parse_args})
    if command[0] == "-m":
        module = __import__(command[1], fromlist=["parse_args"])
        module.parse_args(command[2:])
        return
    parsers[command[0]](command[1:])  # raises SystemExit on an unknown flag


def test_makefile_targets_named_in_readme_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", (ROOT / "README.md").read_text(), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target


@pytest.mark.parametrize("script", ["make_patch.py", "main.py", "test.py"])
def test_readme_flag_tables_are_made_from_the_settings(script):
    """Every flag, its default and its help in the README come from the code (python -m scripts.readme_tables)."""
    table = readme_tables.tables()[script]
    text = (ROOT / "README.md").read_text()
    start, end = readme_tables.table_span(text, script)
    assert text[start:end].rstrip("\n") == table
    module = {"make_patch.py": make_patch, "main.py": train_script, "test.py": load_script("test")}[script]
    flags = {
        o for a in module.build_parser()._actions for o in a.option_strings if o.startswith("--") and o != "--help"
    }
    assert flags == set(re.findall(r"^\| `(--[a-z_0-9]+)`", table, flags=re.M))

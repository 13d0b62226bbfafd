"""The README and docs/ hold no stale command, flag, table or link.

Every command they show must parse (scripts exist and every flag is known), the flag tables of
docs/flags.md are exactly what the settings make (python -m scripts.readme_tables --write), and
every relative link and picture resolves.

The settings classes are reached through scripts.readme_tables.tables(), which imports them from
where they live; when a module moves, that import is the one to fix.
"""

import argparse
import re
import shlex
from pathlib import Path

import pytest

import main as train_script
import make_patch
import restore as restore_script
from conftest import ROOT, load_script
from scripts import flare_data, readme_tables

SCRIPTS = {"make_patch.py": make_patch.parse_args, "main.py": train_script.parse_args,
           "restore.py": lambda argv: restore_script.build_parser().parse_args(argv)}  # fmt: skip
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _commands(page: Path) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("#")[0].strip()
            for part in line.split(";"):
                words = shlex.split(part)
                if words[:1] == ["torchrun"]:  # check the script's own flags
                    script = next(i for i, w in enumerate(words) if w.endswith(".py"))
                    words = ["python"] + words[script:]
                if words[:1] in (["python"], [".venv/bin/python"]) and len(words) > 1:
                    commands.append(words[1:])
    return commands


ALL_COMMANDS = [(_name(page), command) for page in PAGES for command in _commands(page)]


def test_readme_starts_with_the_set_up_commands():
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]


def test_readme_has_the_pipeline_commands():
    scripts = [c[0] for c in _commands(README)]
    for needed in ("make_patch.py", "main.py", "test.py"):
        assert needed in scripts
    assert "-m" in [c[0] for _, c in ALL_COMMANDS]  # the helper commands, in docs/


@pytest.mark.parametrize("page,command", ALL_COMMANDS, ids=lambda x: x if isinstance(x, str) else " ".join(x)[:60])
def test_documented_command_parses(page, command):
    _parser(command)(command[2:] if command[0] == "-m" else command[1:])  # raises SystemExit on an unknown flag


def _parser(command: list[str]):
    """The parse_args of a documented command: a script's, or with -m a module's."""
    if command[0] == "-m":
        return __import__(command[1], fromlist=["parse_args"]).parse_args
    return dict(SCRIPTS, **{"test.py": load_script("test").parse_args})[command[0]]


@pytest.mark.parametrize(
    "command", sorted({tuple(c[:2] if c[0] == "-m" else c[:1]) for _, c in ALL_COMMANDS}), ids=" ".join
)
def test_every_documented_command_prints_its_help(command, capsys):
    """argparse formats every help text only here: a bare percent sign in one once broke restore.py --help."""
    with pytest.raises(SystemExit) as stop:
        _parser(list(command))(["--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out


def test_makefile_targets_named_in_the_docs_exist():
    makefile = (ROOT / "Makefile").read_text()
    for page in PAGES:
        for target in re.findall(r"^make (\w+)", page.read_text(), flags=re.M):
            assert re.search(rf"^{target}:", makefile, flags=re.M), (_name(page), target)


@pytest.mark.parametrize("script", ["make_patch.py", "main.py", "test.py", "scripts.flare_data"])
def test_flag_tables_are_made_from_the_settings(script):
    """Every flag, its default and its help in docs/flags.md come from the code (python -m scripts.readme_tables)."""
    table = readme_tables.tables()[script]
    text = readme_tables.FLAGS_DOC.read_text()
    start, end = readme_tables.table_span(text, script)
    assert text[start:end].rstrip("\n") == table
    module = {"make_patch.py": make_patch, "main.py": train_script, "test.py": load_script("test"),
              "scripts.flare_data": flare_data}[script]  # fmt: skip
    listed = [a for a in module.build_parser()._actions if a.help != argparse.SUPPRESS]
    flags = {o for a in listed for o in a.option_strings if o.startswith("--") and o != "--help"}
    assert flags == set(re.findall(r"^\| `(--[a-z_0-9]+)`", table, flags=re.M))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a markdown page (headings inside code blocks are not headings)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_links_and_pictures_resolve(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for link in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{_name(page)}: {link} does not exist"
        if anchor:
            assert anchor in _anchors(target), f"{_name(page)}: {link} names no heading"


def test_readme_indexes_every_doc():
    text = README.read_text()
    for doc in DOCS:
        assert f"](docs/{doc.name})" in text, doc.name

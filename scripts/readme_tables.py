"""The flag tables of docs/flags.md, made from the settings themselves.

    python -m scripts.readme_tables           # print them
    python -m scripts.readme_tables --write   # put them into docs/flags.md

Each table follows a line ``**`<script>`**`` in docs/flags.md; a test (tests/scenarios/test_readme.py)
checks that the page holds exactly what this prints, so a new or changed setting cannot go
undocumented.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from utils.core.cli import run_cli
from utils.core.errors import fail
from utils.core.settings import flag_table

ROOT = Path(__file__).resolve().parent.parent
FLAGS_DOC = ROOT / "docs" / "flags.md"


def tables() -> dict[str, str]:
    """Script name -> its markdown flag table: its settings classes, then its parser's other flags."""
    import main as train_script
    import make_patch
    import restore
    from scripts import flare_data
    from utils.presets import SCRIPT_SETTINGS

    scripts = {"make_patch.py": make_patch, "main.py": train_script, "test.py": __import__("test"),
               "scripts.flare_data": flare_data, "restore.py": restore}  # fmt: skip
    return {name: flag_table(SCRIPT_SETTINGS[name], module.build_parser()) for name, module in scripts.items()}


def table_span(text: str, script: str) -> tuple[int, int]:
    """Start and end of the table after the ``**`script`**`` line of ``text`` (docs/flags.md)."""
    match = re.search(r"^\*\*`" + re.escape(script) + r"`\*\*.*\n\n((?:\|.*\n)+)", text, flags=re.M)
    if match is None:
        fail(f"{FLAGS_DOC} has no table after a line starting with **`{script}`**.")
    return match.span(1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="replace the tables in docs/flags.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    made = tables()
    if not args.write:
        print("\n\n".join(f"**`{k}`**\n\n{v}" for k, v in made.items()))
        return 0
    text = FLAGS_DOC.read_text()
    for script, table in made.items():
        start, end = table_span(text, script)
        text = text[:start] + table + "\n" + text[end:]
    FLAGS_DOC.write_text(text)
    print(f"wrote {len(made)} flag tables into {FLAGS_DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

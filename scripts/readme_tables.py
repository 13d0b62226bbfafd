"""The flag tables of docs/flags.md, made from the settings themselves.

    python -m scripts.readme_tables           # print them
    python -m scripts.readme_tables --write   # put them into docs/flags.md

Each table follows a line ``**`<script>`**`` in docs/flags.md; a test (tests/test_readme.py)
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
    """Script name -> its markdown flag table."""
    # The settings classes, from where they live now: when a module moves (InferenceOptions may go to
    # utils.infer.options), this is the one place to change, and tests/test_readme.py follows.
    import main as train_script
    import make_patch
    from scripts import flare_data
    from scripts.flare_settings import FlareDataSettings
    from utils.train.config import TrainConfig

    test_script = __import__("test")
    return {
        "make_patch.py": flag_table(make_patch.SETTINGS, make_patch.build_parser()),
        "main.py": flag_table((TrainConfig,), train_script.build_parser()),
        "test.py": flag_table(test_script.SETTINGS, test_script.build_parser()),
        "scripts.flare_data": flag_table((FlareDataSettings,), flare_data.build_parser()),
    }


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

"""The presets of the helper commands (``utils.presets``), as the flags each pipeline script gets.

    python -m scripts.presets              # every preset, one command line per script
    python -m scripts.presets demo         # one preset
    python -m scripts.presets demo --table # as a table: flag, the preset's value, the default, meaning

The helper commands add what changes from run to run (folders, run numbers, sizes); a test
checks that the commands they run carry exactly these flags.
"""

from __future__ import annotations

import argparse
import sys

from utils.core.cli import run_cli
from utils.core.settings import as_flags, flag_fields, flag_name, shown_default
from utils.presets import PRESETS, SCRIPT_SETTINGS, command_words, preset_flags


def preset_lines(name: str) -> list[str]:
    """The preset's heading, then ``python <script> <flags>`` for each script it sets."""
    preset = PRESETS[name]
    lines = [f"{name}: {preset.about}"]
    for script, values in preset.settings().items():
        if values:
            lines.append(f"  python {' '.join([*command_words(script), *preset_flags(name, script)])}")
    return lines


def preset_table(name: str) -> str:
    """A markdown table of the preset: script, flag, the preset's value, the default and the meaning."""
    rows = ["| script | flag | preset | default | meaning |", "|---|---|---|---|---|"]
    for script, values in PRESETS[name].settings().items():
        fields = {f.name: f for cls in SCRIPT_SETTINGS[script] for f in flag_fields(cls)}
        for setting, value in values.items():
            f = fields[setting]
            shown = ("on" if value else "off") if isinstance(value, bool) else None
            given = shown or " ".join(as_flags(SCRIPT_SETTINGS[script], {setting: value})[1:])
            rows.append(f"| {script} | `{flag_name(f)}` | {given} | {shown_default(f)} | {f.metadata['help']} |")
    return f"**{name}**: {PRESETS[name].about}\n\n" + "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", choices=PRESETS, help="the preset to print (default: all)")
    p.add_argument("--table", action="store_true", help="print markdown tables instead of command lines")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [args.name] if args.name else list(PRESETS)
    if args.table:
        print("\n\n".join(preset_table(name) for name in names))
    else:
        print("\n\n".join("\n".join(preset_lines(name)) for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))

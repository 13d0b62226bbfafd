"""Settings defined once: a dataclass field carries its default, type, range and help.

The command-line parser, the checks and the README's flag tables are derived from the
fields, so a setting cannot have one default in ``--help`` and another in the code.
"""

from __future__ import annotations

import argparse
import math
import numbers
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Allowed:
    """The values a setting takes; ``check_ranges`` refuses any other in one sentence.

    ``minimum``, ``maximum``: smallest and largest values; ``positive``: a finite number above zero;
    ``choices``: the values allowed.
    """

    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    choices: typing.Iterable[str] | None = None


@dataclass(frozen=True)
class Form:
    """How a setting shows as a flag, where not the usual way: ``shown``, the default as the README
    shows it; ``flag``, a flag name other than the field's; ``many``, a space-separated list of values."""

    shown: str | None = None
    flag: str | None = None
    many: bool = False


@dataclass(frozen=True)
class Resume:
    """What ``--resume`` does with a training setting: ``policy`` is one of ``RESUME_POLICIES``; a
    ``changeable`` one has a ``note`` that the log prints when a resumed run changes it."""

    policy: str
    note: str | None = None


RESUME_POLICIES = {
    "fixed": "kept from the checkpoint; a flag asking for another value is refused (it would change the run)",
    "changeable": "kept from the checkpoint unless given again",
    "invocation": "how this invocation runs; never taken from the checkpoint",
}
FIXED, INVOCATION = Resume("fixed"), Resume("invocation")


@dataclass(frozen=True)
class PerSize:
    """A default taken from a column of the per-size recipe (``utils.recipe.SizeRecipe``): the field holds
    None until ``fill_from_recipe`` gives it the column's value."""

    column: str


def setting(
    default: Any,
    help: str,
    allowed: Allowed | None = None,
    *,
    new: bool = False,
    form: Form | None = None,
    resume: Resume | None = None,
) -> Any:
    """A dataclass field that is also a command-line flag.

    ``default``: a value, or ``PerSize(column)`` for the recipe's value (shown as "per size");
    ``allowed``: the values it takes; ``new``: not a flag of the original (marked so in the README);
    ``form``: how the flag is named and shown, where not as usual; ``resume`` (training settings): what
    ``--resume`` does with it. A boolean that defaults to true becomes ``--no_<name>``; ``--<name>``, its
    value already, is accepted unlisted.
    """
    allowed, form = allowed or Allowed(), form or Form()
    recipe = default.column if isinstance(default, PerSize) else None
    meta = {"help": help, "minimum": allowed.minimum, "maximum": allowed.maximum, "positive": allowed.positive,
            "choices": tuple(allowed.choices or ()) or None, "shown": form.shown or ("per size" if recipe else None),
            "new": new, "flag": form.flag, "many": form.many, "resume": resume and resume.policy,
            "resume_note": resume and resume.note, "recipe": recipe}  # fmt: skip
    return field(default=None if recipe else default, metadata=meta)


def fill_from_recipe(obj: Any, row: Any) -> None:
    """Give every setting of ``obj`` that is None and names a recipe column that column's value in ``row``."""
    for f in fields(obj):
        if f.metadata.get("recipe") and getattr(obj, f.name) is None:
            setattr(obj, f.name, getattr(row, f.metadata["recipe"]))


def flag_fields(cls: type) -> list[Field]:
    return [f for f in fields(cls) if "help" in f.metadata]


def _base_type(annotation: Any) -> type:
    """``int`` for ``int | None`` and the like."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def flag_name(f: Field) -> str:
    if f.metadata.get("flag"):
        return f"--{f.metadata['flag']}"
    return f"--no_{f.name}" if f.default is True else f"--{f.name}"


def add_settings(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per setting of ``cls``, with the field's default, type, choices and help."""
    hints = typing.get_type_hints(cls)
    for f in flag_fields(cls):
        kind, meta = _base_type(hints[f.name]), f.metadata
        if kind is bool:
            action = "store_false" if f.default is True else "store_true"
            parser.add_argument(flag_name(f), dest=f.name, action=action, help=_escaped(meta["help"]))
            if flag_name(f) == f"--no_{f.name}":  # the on-by-default flag, as typed when it was off by default
                parser.add_argument(
                    f"--{f.name}", dest=f.name, action="store_true", default=True, help=argparse.SUPPRESS
                )
            continue
        default = None if f.default is MISSING else f.default
        many = {"nargs": "+"} if meta.get("many") else {}
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            kind = item if many else _comma_list(item)
        bounds = f"{_range_text(meta)}; " if _range_text(meta) else ""
        help_text = f"{meta['help']} ({bounds}default {shown_default(f).strip('`')}{_choices_text(meta)})"
        parser.add_argument(flag_name(f), type=kind, default=default, help=_escaped(help_text), **many)  # checked later


def _escaped(text: str) -> str:
    """Help text as argparse reads it: a percent sign written twice, since ``%`` starts a format there."""
    return text.replace("%", "%%")


def _range_text(meta: typing.Mapping) -> str:
    """``"2 to 10000"`` for a setting with both a minimum and a maximum (shown in its help), else nothing."""
    if meta.get("minimum") is None or meta.get("maximum") is None:
        return ""
    return f"{meta['minimum']} to {meta['maximum']}"


def _choices_text(meta: typing.Mapping) -> str:
    return f"; one of {', '.join(meta['choices'])}" if meta["choices"] else ""


def _comma_list(item: type) -> typing.Callable[[str], tuple]:
    def comma_list(text: str) -> tuple:
        return tuple(item(x) for x in text.split(",") if x.strip())

    comma_list.__name__ = f"comma-separated {item.__name__}"  # argparse names it in its error message
    return comma_list


def from_args(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of ``cls`` from the parsed flags (settings without a flag keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in flag_fields(cls)}
    lists = {name: tuple(v) for name, v in values.items() if isinstance(v, list)}  # nargs="+" gives lists
    return cls(**values | lists, **extra)


def given_settings(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The settings named on the command line (``--wf 8`` or ``--wf=8``), whatever their value."""
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    return {a.dest for a in parser._actions if typed & set(a.option_strings)}


def _problem(name: str, value: Any, meta: typing.Mapping) -> str | None:
    if value is None:
        return None
    flag = f"--{name}"
    if meta.get("choices") and value not in meta["choices"]:
        return f"{flag} {value} is not available; choose one of {', '.join(meta['choices'])}"
    if meta.get("positive") and not (math.isfinite(value) and value > 0):
        return f"{flag} must be a positive number (got {value})"
    maximum = meta.get("maximum")
    if maximum is not None and value > maximum:
        return f"{flag} must be at most {maximum} (got {value})"
    minimum = meta.get("minimum")
    if minimum is None:
        return None
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, numbers.Integral)
        and not (math.isfinite(value) and value >= minimum)
    ):
        return (
            f"{flag} must be zero or a positive number (got {value})"
            if minimum == 0
            else f"{flag} must be at least {minimum:g} (got {value})"
        )
    if value < minimum:
        return (
            f"{flag} must not be negative (got {value})"
            if minimum == 0
            else f"{flag} must be at least {minimum} (got {value})"
        )
    return None


def check_ranges(obj: Any) -> list[str]:
    """One sentence per setting of ``obj`` outside its range or choices, in field order."""
    problems = (_problem(f.name, getattr(obj, f.name), f.metadata) for f in fields(obj))
    return [p for p in problems if p]


def shown_default(f: Field) -> str:
    """A setting's default as the README shows it."""
    if f.metadata.get("shown"):
        return f.metadata["shown"]
    if f.default is None or isinstance(f.default, bool):
        return "off"
    if isinstance(f.default, str):
        return f"`{f.default}`"
    if isinstance(f.default, tuple):
        return f"`{' '.join(map(str, f.default))}`" if f.metadata.get("many") else ",".join(map(str, f.default))
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def _shown_action_default(action: argparse.Action) -> str:
    value = action.default
    if value is False:
        return "off"
    if value is None:
        return "—"
    return f"`{value}`" if isinstance(value, str) else str(value)


def flag_table(classes: tuple[type, ...], parser: argparse.ArgumentParser | None = None) -> str:
    """The README's markdown table of the classes' flags (flag, default, meaning), then the parser's other flags."""
    rows = []
    for f in (f for cls in classes for f in flag_fields(cls)):
        meta = f.metadata
        bounds = f" ({_range_text(meta)})" if _range_text(meta) else ""
        meaning = meta["help"] + bounds + _choices_text(meta) + (" (new)" if meta["new"] else "")
        rows.append((flag_name(f), shown_default(f), meaning))
    names = {f.name for cls in classes for f in flag_fields(cls)} | {"help"}
    for action in parser._actions if parser else ():
        if action.dest not in names:
            flag = action.option_strings[0] if action.option_strings else f"{action.dest.upper()} ..."  # positional
            rows.append((flag, _shown_action_default(action), action.help))
    lines = ["| flag | default | meaning |", "|---|---|---|"]
    return "\n".join(lines + [f"| `{flag}` | {default} | {meaning} |" for flag, default, meaning in rows])


def as_flags(classes: tuple[type, ...], values: typing.Mapping[str, Any]) -> list[str]:
    """The command-line words that give the classes' settings ``values`` (setting name -> value), in that order,
    so that a helper command and a printed preset spell them alike."""
    by_name = {f.name: f for cls in classes for f in flag_fields(cls)}
    words = []
    for name, value in values.items():
        f = by_name[name]
        if isinstance(value, bool):
            words += [flag_name(f)] if value != f.default else []
        elif isinstance(value, tuple):
            words += (
                [flag_name(f), *map(str, value)]
                if f.metadata.get("many")
                else [flag_name(f), ",".join(map(str, value))]
            )
        else:
            words += [flag_name(f), f"{value:g}" if isinstance(value, float) else str(value)]
    return words

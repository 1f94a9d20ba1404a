"""Flags shared by the subcommands: one-line argparse errors, typed values, the train flags.

``gpumlp train`` and ``gpumlp sweep`` take the same network, training and data flags, with the
Python API's names and defaults: one flag per entry of :data:`gpumlp.settings.SETTINGS` that has
a ``group``, its type, bounds, choices and help read from the entry (:func:`add_flag`). Unset
flags stay unset, so ``--resume`` can fill them from the run it continues.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ..settings import SETTINGS, Setting

__all__ = ["Defaults", "Parser", "UsageError", "add_flag", "add_train_flags", "check_output_path",
           "flag_kwargs", "names", "number", "sizes"]  # fmt: skip


class UsageError(ValueError):
    """Bad command-line input, reported as one line and exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def sizes(text: str, *, least: int = 2) -> list[int]:
    """``"784,30,10"`` -> [784, 30, 10]: comma-separated positive integers, at least ``least``."""
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 784,30,10, got {text!r}"
        ) from None
    if len(values) < least or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected at least {least} positive sizes, got {text!r}")
    return values


def names(text: str, choices: list[str]) -> list[str]:
    """``"a,b"`` -> ["a", "b"]: comma-separated names, each one of ``choices`` when given."""
    values = [s.strip() for s in text.split(",")]
    if not all(values):
        raise argparse.ArgumentTypeError(f"expected comma-separated names like a,b, got {text!r}")
    unknown = [v for v in values if choices and v not in choices]
    if unknown:
        raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of {', '.join(choices)}")
    return values


def number(
    kind: type, low: float, *, strict: bool = False, high: float | None = None, none: bool = False
) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float), finite, >= low (> low if strict), < high; with
    ``none``, the word ``none`` too (None: a setting's "no value", say no early stopping where
    a table's default has one)."""

    def parse(text: str) -> Any:
        if none and text == "none":
            return None
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        too_low = value < low or (strict and value == low)
        if high is not None and (too_low or value >= high):
            bracket = "(" if strict else "["
            raise argparse.ArgumentTypeError(f"must lie in {bracket}{low}, {high}), got {text}")
        if too_low:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value

    return parse


def flag_kwargs(setting: Setting) -> dict[str, Any]:
    """The argparse keywords of ``setting``'s flag: its type, with the table's bounds, or its
    choices, or a switch with its ``--no-`` form."""
    low = -math.inf if setting.low is None else setting.low
    none = setting.default is None  # None is one of its values
    if setting.kind == "int":
        return {"type": number(int, low, none=none)}
    if setting.kind == "float":
        return {"type": number(float, low, strict=setting.strict, high=setting.high, none=none)}
    if setting.kind == "sizes":
        least = int(low)
        return {"type": lambda text: sizes(text, least=least)}
    if setting.kind == "bool":  # --no-standardize turns off what a table's default turns on
        return {"action": argparse.BooleanOptionalAction}
    if setting.kind == "choice":
        return {"choices": list(setting.choices)}
    if setting.kind == "names":
        return {"type": lambda text: names(text, list(setting.choices))}
    return {}


def add_flag(
    group: Any, name: str, *, default: Any = argparse.SUPPRESS, help: str | None = None
) -> None:
    """Add the flag of the setting ``name`` to ``group`` (a parser or an argument group).

    Its type, bounds and choices are the table's. ``default`` is unset unless given (a command
    whose defaults differ from the table's, as ``gpumlp parity``'s); ``help`` defaults to the
    table's, with the table's default.
    """
    s = SETTINGS[name]
    if help is None:
        shown = s.shown or ("none" if s.default is None else s.default)
        tables = "" if s.table_default is None else f"; tables: {s.table_default.shown}"
        help = f"{s.help} (default {shown}{tables})".strip()
    flag = "--" + name.replace("_", "-")
    group.add_argument(flag, default=default, help=help, **flag_kwargs(s))


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """The network, training and data flags of ``gpumlp train`` (also ``gpumlp sweep``'s): every
    setting with a ``group``, in the table's order, under that group."""
    groups: dict[str, Any] = {}
    for s in SETTINGS.values():
        if s.group is not None:
            if s.group not in groups:
                groups[s.group] = p.add_argument_group(s.group)
            add_flag(groups[s.group], s.name)


def check_output_path(value: str, flag: str, what: str) -> None:
    """Refuse (ValueError naming ``flag``) an output file ``value`` that cannot be written, before
    anything runs: empty, a folder, in a folder that does not exist or is not writable.
    ``what`` says what is written there ("the report")."""
    path = Path(value)
    if not value.strip() or path.is_dir():
        raise ValueError(f"{flag} {value!r} must name a file to write {what} to")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"{flag} {value!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{flag} {value!r}: {str(folder)!r} is not writable")

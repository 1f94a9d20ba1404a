"""One setting of a network or its training (:class:`Setting`): its kind, bounds, default,
help and owner, and its checks of a value given in Python or read back from a file. The table
of every setting is :mod:`gpumlp.settings`.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._checks import check_int, check_number
from .tabledefaults import DataShape, Rule

__all__ = ["KINDS", "OWNERS", "Setting"]

KINDS = ("int", "float", "bool", "choice", "text", "sizes", "names", "path")
"""``int``/``float``: a number in [low, high) ((low, high) when ``strict``); ``bool``; ``choice``:
one of ``choices``; ``text``: a free string; ``sizes``: a list of at least ``low`` positive
integers (``784,30,10`` on the command line); ``names``: a sequence of names
(some of ``choices``, when given; ``a,b`` on the command line); ``path``: a file."""
OWNERS = ("layers", "network", "fit", "data", "run")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class Setting:
    """One setting. ``low``/``high``/``strict`` bound a number (``low`` is the fewest entries
    of ``sizes``); ``noun`` names what a ``choice`` is in messages ("an optimizer"); ``group``
    is the ``--help`` group of its flag (None: no flag); ``shown`` is the default as ``--help``
    says it where the value would not tell. ``searchable``: a sweep may search it;
    ``checkpointed``: a checkpoint records it and a resume takes it back. A None ``default``
    makes None a value of the setting (no value: drawn, unlimited, the data's, ...).
    ``table_default``: the rule of its default for tables (:meth:`default_for`)."""

    name: str
    kind: str
    default: Any
    owner: str
    help: str = ""
    low: float | None = None
    high: float | None = None
    strict: bool = False
    choices: Collection[str] = ()
    noun: str = ""
    group: str | None = None
    shown: str = ""
    searchable: bool = False
    checkpointed: bool = False
    table_default: Rule | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.owner not in OWNERS:
            raise ValueError(f"setting {self.name!r}: kind {self.kind!r} or owner {self.owner!r}")
        if self.kind in ("int", "float", "sizes") and self.low is None:
            raise ValueError(f"setting {self.name!r}: a {self.kind} needs low")
        if self.table_default is not None and (self.owner == "data" or self.name == "seed"):
            raise ValueError(f"setting {self.name!r} is read to load the data: no data default")

    def default_for(self, data: DataShape | None) -> Any:
        """The default once ``data`` is loaded: the table's rule for a table, else ``default``."""
        if data is not None and data.kind == "table" and self.table_default is not None:
            return self.table_default(data)
        return self.default

    def check(self, value: Any) -> Any:
        """``value`` as the owning record holds it (an int, a float, a tuple of names, a Path).

        Raises TypeError (wrong type) or ValueError (out of bounds, not a choice) naming the
        setting, the value and what was expected.
        """
        name, kind = self.name, self.kind
        if value is None and self.default is None:
            return None
        if kind == "int":
            return check_int(name, value, minimum=int(self.low or 0))
        if kind == "float":
            below = None if self.high is None else float(self.high)
            return check_number(name, value, low=self.low, strict=self.strict, below=below)
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            return value
        if kind == "choice" and value not in tuple(self.choices):
            raise ValueError(
                f"{name}={value!r} is not {self.noun}; expected one of {list(self.choices)}"
            )
        if kind == "names":
            return self._names(value)
        if kind == "path":
            return Path(value)
        if kind == "sizes":
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise TypeError(f"{name} must be a list of integers, got {value!r}")
            if len(value) < (least := self.low or 0):
                raise ValueError(f"{name} must have at least {least:g} entries, got {value}")
            return [check_int(f"{name}[{i}]", n) for i, n in enumerate(value)]
        if kind == "text" and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, got {value!r}")
        return value

    def _names(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            raise TypeError(f"{self.name} must be a sequence of names, got the string {value!r}")
        names = tuple(value)
        for entry in names:
            if self.choices and entry not in tuple(self.choices):
                raise ValueError(
                    f"{self.name} entry {entry!r} is not {self.noun}; expected some of "
                    f"{list(self.choices)}"
                )
        return names

    def check_file(self, value: Any) -> str | None:
        """None when ``value``, read back from a file (JSON: ``args.json``, a checkpoint), is
        one this setting's flag takes; else what it must be ("an integer >= 1")."""
        kind, low, high = self.kind, self.low or 0, self.high
        if kind == "int":
            ok, what = _is_int(value) and value >= low, f"an integer >= {low:g}"
        elif kind == "float":
            ok = (isinstance(value, int | float) and not isinstance(value, bool)
                  and math.isfinite(value) and (value > low if self.strict else value >= low)
                  and (high is None or value < high))  # fmt: skip
            sign, opening = (">", "(") if self.strict else (">=", "[")
            what = (f"a number {sign} {low:g}" if high is None
                    else f"a number in {opening}{low:g}, {high:g})")  # fmt: skip
        elif kind == "bool":
            ok, what = isinstance(value, bool), "true or false"
        elif kind == "sizes":
            ok = (isinstance(value, list) and len(value) >= low
                  and all(_is_int(n) and n >= 1 for n in value))  # fmt: skip
            what = (f"a list of at least {low:g} positive integers" if low > 1
                    else "a non-empty list of positive integers")  # fmt: skip
        elif kind == "names":
            ok = isinstance(value, list) and all(isinstance(n, str) for n in value)
            what = "a list of strings"
        else:  # names are checked when the run is planned, by the records
            ok, what = isinstance(value, str | int), "a string"
        if value is None and (self.default is None or kind in ("choice", "text")):
            return None
        return None if ok else what

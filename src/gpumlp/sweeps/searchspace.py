"""What the trials of a sweep search: the search space, each trial's flags, and the checks
made before any trial (no Optuna here: a trial is anything with ``suggest_float``,
``suggest_int`` and ``suggest_categorical``). ``SPACE.toml`` maps train flags to::

    lr = {log = [0.01, 10]}                  # log-uniform float in [0.01, 10]
    l2 = {float = [0.0, 5.0]}                # uniform float (add log = true for log-uniform)
    hidden = {int = [30, 300], log = true}   # ONE hidden layer of 30..300 units
    batch_size = {choice = [10, 32, 100]}    # hidden = {choice = ["100", "100,50"]}: depths

The flags a space may search are the table's searchable ones
(:data:`gpumlp.settings.SEARCHABLE`), each checked against its bounds there. An entry is
refused with a ValueError naming its key (unknown flag or distribution, low >=
high, a log range reaching 0, a choice not a list, a value the flag refuses) before anything
is written; :func:`check_space` then plans a run at every bound and choice, refusing names and
combinations the network or the data cannot take (``optimizer = "adamw"``). So that this check
stays short, a choice lists at most :data:`MAX_CHOICES` values and SPACE.toml holds at most
:data:`MAX_SPACE_BYTES` (a regular file of UTF-8 TOML, else a ValueError naming it).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data import sources
from ..data.sources import DataSet
from ..errors import CheckpointError
from ..files.safeio import open_regular
from ..runs.rundir import check_flags
from ..runs.runner import layers_for, plan_run
from ..settings import FLAGS, SEARCHABLE, defaults

__all__ = ["MAX_CHOICES", "SEARCHABLE", "Dimension", "check_space", "hold_out", "read_space",
           "trial_flags"]  # fmt: skip

_KINDS = ("log", "float", "int", "choice")
MAX_CHOICES = 1000
"""Values a choice may list: each is checked and planned before any trial (about a millisecond
each), and Optuna stores the whole list with every trial; a wider search is a range."""
MAX_SPACE_BYTES = 1 << 20
"""Bytes a SPACE.toml may hold (a space is a few lines; 1,000 choices of a flag fit easily)."""
_SHAPES = "log = [low, high], float = [low, high], int = [low, high] or choice = [...]"


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched flag: ``kind`` "float" or "int" over [low, high] (log-uniform when
    ``log``), or "choice" among ``choices``."""

    flag: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The trial's value for this flag, as Optuna stores it (a width for ``hidden``)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.flag, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.flag, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.flag, self.low, self.high, log=self.log)

    def to_flag(self, value: Any) -> Any:
        """A suggested value as the flag takes it: ``hidden`` 120 or "100,50" -> [120],
        [100, 50]."""
        if self.flag != "hidden":
            return value
        try:
            return [int(w) for w in str(value).split(",")]
        except ValueError:
            raise ValueError(f'expected widths like 100 or "100,50", got {value!r}') from None

    def corners(self) -> list[Any]:
        """The values a plan is checked at: both bounds, or every choice."""
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def to_dict(self) -> dict[str, Any]:
        """The entry as ``SPACE.toml`` would write it (kept on the study to compare reruns)."""
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        return {self.kind: [self.low, self.high]} | ({"log": True} if self.log else {})


def read_space(space: Mapping[str, Any] | str | Path) -> tuple[dict[str, Dimension], str]:
    """Parse ``space``, a SPACE.toml path or a dict of that shape: (the dimensions by flag, the
    name errors give the source). ValueError naming the key, OSError for an unreadable file."""
    if isinstance(space, str | Path):
        source = str(space)
        space = _read_toml(Path(space))
    else:
        source = "space"
        if not isinstance(space, Mapping):
            raise TypeError(f"space must be a dict or a SPACE.toml path, got {space!r}")
    if not space:
        raise ValueError(f"{source} searches no flag: add entries like lr = {{log = [0.01, 10]}}")
    return {key: _dimension(source, key, entry) for key, entry in space.items()}, source


def _read_toml(path: Path) -> dict[str, Any]:
    """SPACE.toml read whole, at most :data:`MAX_SPACE_BYTES`, from a regular file; ValueError
    naming it when it is not UTF-8 TOML (or nests too deep for the parser)."""
    with open_regular(path, "the search space") as f:
        raw = f.read(MAX_SPACE_BYTES + 1)
    if len(raw) > MAX_SPACE_BYTES:
        raise ValueError(
            f"{str(path)!r} holds more than {MAX_SPACE_BYTES:,} bytes: too big for a search space"
        )
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    except RecursionError:
        raise ValueError(f"{str(path)!r} is nested too deep to be a search space") from None


def _dimension(source: str, key: str, entry: Any) -> Dimension:
    where = f"{source}: {key}"
    if key not in SEARCHABLE:
        known = "a flag that can be searched" if key in FLAGS else "a gpumlp train flag"
        raise ValueError(f"{where}: not {known}; searchable: {', '.join(SEARCHABLE)}")
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where}: expected a table like {{log = [0.01, 10]}}, got {entry!r}")
    unknown = [k for k in entry if k not in _KINDS]
    kinds = [k for k in _KINDS if k in entry and not (k == "log" and isinstance(entry[k], bool))]
    if unknown or len(kinds) != 1:
        what = f"unknown distribution {unknown[0]!r}" if unknown else f"got {list(entry) or 'none'}"
        raise ValueError(f"{where}: {what}; give exactly one of {_SHAPES}")
    kind = kinds[0]
    log = entry.get("log") is True
    if kind == "choice":
        choices = entry["choice"]
        if log:
            raise ValueError(f"{where}: log = true applies to float and int ranges, not choice")
        if not isinstance(choices, list) or not choices:
            raise ValueError(f"{where}: choice must be a non-empty list of values, got {choices!r}")
        if len(choices) > MAX_CHOICES:
            raise ValueError(
                f"{where}: choice holds {len(choices):,} values, more than the {MAX_CHOICES:,} "
                "a choice may list: search a range instead (int = [low, high])"
            )
        bad = [c for c in choices if not isinstance(c, str | int | float)]
        if bad or len(set(map(repr, choices))) != len(choices):
            what = f"{bad[0]!r} is not a string or number" if bad else "holds a value twice"
            raise ValueError(f"{where}: choice {choices!r} {what}")
        dim = Dimension(key, "choice", choices=tuple(choices))
    else:
        bounds = entry[kind]
        integral = kind == "int"
        ok = isinstance(bounds, list) and len(bounds) == 2
        ok = ok and all(_number(b, integral) for b in bounds)
        if not ok:
            of = "integers" if integral else "numbers"
            raise ValueError(f"{where}: {kind} = {bounds!r} must be [low, high], two {of}")
        low, high = bounds
        if low >= high:
            raise ValueError(f"{where}: {kind} = {bounds!r}: low must be below high")
        log = log or kind == "log"
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0, got {bounds!r}")
        dim = Dimension(key, "int" if integral else "float", low, high, log)
    for value in dim.corners():
        try:
            check_flags({key: dim.to_flag(value)}, Path(source))
        except (CheckpointError, ValueError) as exc:
            why = str(exc).split(": ", 1)[-1]
            raise ValueError(f"{where}: {value!r} is refused: {why}") from None
    return dim


def _number(value: Any, integral: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) if integral else math.isfinite(value)


def trial_flags(
    dims: Mapping[str, Dimension],
    values: Mapping[str, Any],
    fixed: Mapping[str, Any],
    data: DataSet,
) -> dict[str, Any]:
    """The flags of one trial: the defaults for ``data`` (:func:`gpumlp.settings.defaults`),
    the sweep's ``fixed`` flags, then the searched ``values`` (Optuna's, by flag), scored on
    the validation split, ``sizes`` fitted to ``data``. Raises ValueError when the network does
    not fit the data."""
    searched = {k: dims[k].to_flag(v) for k, v in values.items()}
    flags = defaults(data) | dict(fixed) | searched | {"monitor_set": "validation"}
    # A checkpoint each epoch: a pruned trial's folder then ends with its last epoch's model.
    flags["checkpoint_every"] = flags["checkpoint_every"] or 1
    flags |= layers_for(flags, data, given={*fixed, *searched})
    return flags


def check_space(
    dims: Mapping[str, Dimension], fixed: Mapping[str, Any], data: DataSet, source: str
) -> None:
    """Refuse a space the runs cannot take, before anything is written: a flag both fixed and
    searched, the test split scored, or a value :func:`gpumlp.runs.runner.plan_run` refuses (at each
    bound and choice, the others at their first; every combination of up to 64 choices).
    Raises ValueError naming the key and value."""
    for key in dims:
        if key in fixed or (key == "hidden" and "sizes" in fixed):
            given = "sizes" if key == "hidden" else key
            raise ValueError(
                f"{source}: {key} is searched, so --{given.replace('_', '-')} cannot fix it"
            )
    if fixed.get("monitor_set") == "test":
        raise ValueError("--monitor-set test: a sweep scores the validation split, never the test")
    first = {k: d.corners()[0] for k, d in dims.items()}
    cases = [{k: v} for k, d in dims.items() for v in d.corners()]
    named = [k for k, d in dims.items() if d.kind == "choice"]
    if math.prod(len(dims[k].choices) for k in named) <= 64:
        product = itertools.product(*(dims[k].choices for k in named))
        cases += [dict(zip(named, c, strict=True)) for c in product]
    for i, case in enumerate(cases):  # the data's values once: its dtype is never searched
        try:
            plan_run(trial_flags(dims, first | case, fixed, data), data, check_values=i == 0)
        except (ValueError, TypeError, MemoryError) as exc:
            at = " with ".join(f"{k} = {v!r}" for k, v in case.items())
            raise ValueError(f"{source}: {at} is refused: {exc}") from None


def hold_out(data: DataSet, fraction: float | None, seed: int) -> DataSet:
    """``data`` with a validation split: its own, else ``fraction`` (default 1/6, as MNIST's npz
    and IDX files give) of the training rows, drawn by ``seed`` (:func:`sources.hold_out`)."""
    if data.validation is not None:
        return data
    train, validation = sources.hold_out(data.train, fraction or 1 / 6, seed)
    return dataclasses.replace(data, train=train, validation=validation)

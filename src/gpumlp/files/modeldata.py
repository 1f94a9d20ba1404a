"""What a model knows of the data it was trained on: its classes, its input columns' names,
and the kind of data it takes; the part of a model file's metadata that says so.

``classes`` are the class of each output, in order: names (strings) or the original label
values (numbers: ints, integral floats kept as ints, other finite floats; or booleans), one per
output unit (two for a single unit, whose classes are "below 0.5" and "above"). None means the
classes are the output indices 0..k-1, as MNIST's digits, and as every model file written
before classes were kept loads. ``features`` names the input columns (a CSV header's), None
when they have no names; ``label`` names the training file's label column. ``kind`` is
``"images"`` (28×28 pictures: ``gpumlp predict`` takes pictures) or ``"table"`` (rows of a
table), None when unknown (older files).

:func:`check_classes` and :func:`check_features` are the one check of each, for the Python API
(``Network(classes=...)``; ValueError/TypeError naming the argument) and for files
(:meth:`DataInfo.from_meta`; CheckpointError naming the file and the key).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CheckpointError

__all__ = [
    "DATA_KINDS",
    "MAX_LABEL",
    "DataInfo",
    "check_classes",
    "check_features",
    "check_kind",
    "check_label",
    "class_indices",
    "class_value",
    "column_order",
    "not_class_labels",
    "shown",
    "value_kind",
]

DATA_KINDS = ("images", "table")
"""What a model's inputs are: pictures (MNIST's 28×28 digits) or the rows of a table."""

Label = str | bool | int | float


def shown(values: Sequence[Any], most: int = 20) -> str:
    """The first ``most`` of ``values`` (names, classes) as a message lists them: their reprs
    joined by commas, then ", ..." when there are more."""
    return ", ".join(map(repr, values[:most])) + (", ..." if len(values) > most else "")


def class_value(value: Any) -> Any:
    """``value`` as a class is kept (a Python str, bool, int or float; a float that is an
    integer as an int); anything else is returned as it is, for :func:`check_classes` to
    refuse."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def value_kind(value: Any) -> str | None:
    """What kind of class ``value`` (as :func:`class_value` gives it) is: "strings",
    "booleans" or "numbers" (finite); None for anything else."""
    if isinstance(value, str):
        return "strings"
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return "numbers"
    return None


def class_indices(values: Sequence[Any], classes: Sequence[Any]) -> np.ndarray[Any, Any]:
    """The index among ``classes`` (of one kind, as :func:`check_classes` keeps them) of each
    label of ``values`` (k,) (as :func:`class_value` gives them): int64 (k,), -1 for a label
    that is no class. A label finds a class of its own kind only (``True`` never finds ``1``)."""
    index, kind = {c: i for i, c in enumerate(classes)}, value_kind(classes[0])
    found = [index.get(v, -1) if value_kind(v) == kind else -1 for v in values]
    return np.array(found, dtype=np.int64)


MAX_LABEL = 2**31
"""Numeric labels of this magnitude and past are not classes (ids, say); 2**63 and past would
wrap in the int64 cast."""


def not_class_labels(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Where the numeric labels ``values`` (a host array) are no class found by value: not
    finite, fractions, or of magnitude :data:`MAX_LABEL` and past (bool, their shape)."""
    bad: np.ndarray[Any, Any] = (values <= -MAX_LABEL) | (values >= MAX_LABEL)
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            bad |= ~np.isfinite(values) | (values % 1 != 0)
    return bad


def check_classes(values: Any, n_out: int, *, name: str = "classes") -> tuple[Label, ...]:
    """``values`` as a model keeps its classes: a sequence of ``n_out`` distinct class values
    (two when ``n_out`` is 1), all strings, all finite numbers or all booleans.

    Raises TypeError (not a sequence; a value of another kind: naming it) or ValueError (the
    wrong count, a repeated value), naming ``name``.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a sequence of class names or values, got {values!r:.100}")
    out = tuple(class_value(v) for v in values)
    want = 2 if n_out == 1 else n_out
    if len(out) != want:
        units = "1 output unit (2 classes)" if n_out == 1 else f"{n_out} output units"
        raise ValueError(f"{name} has {len(out)} entries, but the network has {units}")
    kinds = [value_kind(v) for v in out]
    for v, kind in zip(out, kinds, strict=True):
        if kind is None or kind != kinds[0]:
            what = "one kind: strings, finite numbers or booleans"
            raise TypeError(f"{name} holds {v!r:.100}: its values must be of {what}")
    if len(set(out)) != len(out):
        twice = next(v for i, v in enumerate(out) if v in out[:i])
        raise ValueError(f"{name} holds {twice!r:.100} more than once")
    return out


def check_features(values: Any, n_in: int, *, name: str = "features") -> tuple[str, ...]:
    """``values`` as a model keeps its input columns' names: ``n_in`` distinct strings.
    TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"{name} must be a sequence of column names, got {values!r:.100}")
    out = tuple(class_value(v) for v in values)
    if bad := [v for v in out if not isinstance(v, str)]:
        raise TypeError(f"{name} holds {bad[0]!r:.100}: column names must be strings")
    if len(out) != n_in:
        raise ValueError(f"{name} has {len(out)} names, but the network takes {n_in} inputs")
    if len(set(out)) != len(out):
        twice = next(v for i, v in enumerate(out) if v in out[:i])
        raise ValueError(f"{name} names the column {twice!r:.100} more than once")
    return out


def check_kind(kind: Any, *, name: str = "data_kind") -> str:
    """``kind``, one of :data:`DATA_KINDS`; ValueError naming ``name`` otherwise."""
    if kind not in DATA_KINDS:
        raise ValueError(f"{name} must be one of {', '.join(DATA_KINDS)}, got {kind!r:.100}")
    return str(kind)


def check_label(label: Any) -> str:
    """``label``, the name of a training file's label column; TypeError otherwise."""
    if not isinstance(label, str):
        raise TypeError(f"label must be a column's name, got {label!r:.100}")
    return label


def column_order(
    names: Sequence[str], features: Sequence[str], *, source: str, ignored: Sequence[str] = ()
) -> list[int]:
    """Where each of a model's input columns ``features`` is among a table's columns ``names``
    (their indices, in the model's order): the columns matched by name, in any order.

    Raises ValueError naming ``source``: a column of ``features`` missing; a column of
    ``names`` that is neither one of them nor ``ignored`` (a label column, say); a name
    that two columns share.
    """
    where: dict[str, int] = {}
    for j, n in enumerate(names):
        if n in where:
            raise ValueError(f"{source} has two columns named {n!r:.100}")
        where[n] = j
    known = f"the model's inputs are {shown(features)}"
    if missing := [f for f in features if f not in where]:
        raise ValueError(f"{source} has no column {missing[0]!r:.100}: {known}")
    wanted = set(features) | set(ignored)
    if extra := [n for n in names if n not in wanted]:
        raise ValueError(
            f"{source} has a column {extra[0]!r:.100} the model does not take: {known}"
        )
    return [where[f] for f in features]


@dataclass(frozen=True)
class DataInfo:
    """A model's classes, input names and kind of data (see the module docstring), checked
    by whoever builds one (:func:`check_classes`, :func:`check_features`)."""

    classes: tuple[Label, ...] | None = None
    features: tuple[str, ...] | None = None
    kind: str | None = None
    label: str | None = None

    def meta(self) -> dict[str, Any]:
        """The model file's metadata of this record: the keys that are set."""
        out: dict[str, Any] = {}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        if self.features is not None:
            out["features"] = list(self.features)
        if self.kind is not None:
            out["data"] = self.kind
        if self.label is not None:
            out["label"] = self.label
        return out

    @classmethod
    def from_meta(
        cls, meta: Mapping[str, Any], sizes: Sequence[int], path: str | os.PathLike[str]
    ) -> DataInfo:
        """The record a file's metadata ``meta`` holds for a network of ``sizes`` (already
        checked); a file without these keys gives None for each. CheckpointError naming the
        file and the key when one is not what it must be."""
        try:
            classes, features = meta.get("classes"), meta.get("features")
            kind, label = meta.get("data"), meta.get("label")
            return cls(
                None if classes is None else check_classes(classes, sizes[-1]),
                None if features is None else check_features(features, sizes[0]),
                None if kind is None else check_kind(kind, name="data"),
                None if label is None else check_label(label),
            )
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{str(path)!r} holds an invalid model configuration: {exc}"
            ) from None

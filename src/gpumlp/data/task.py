"""What a table's labels are: classes to tell apart, or values to predict (its task).

``--task`` says it. When it does not, the labels say it:

- 1-D numeric labels (a CSV's label column, a 1-D ``y``) that are not all integers are values:
  regression (:func:`label_task`);
- integers are classes, unless they take more distinct values than classes do: more than
  min(100, n/10) of the n rows, and more than :data:`FEW` (a small file's few classes stay
  classes). Then neither is assumed and the message names both choices: diabetes' integer
  targets (25 to 346) once trained a 347-class network;
- class names are classes;
- targets (n, k) are values when some lie outside [0, 1], else the scores of classes
  (:func:`targets_task`).

For regression, 1-D labels become targets (n, 1) float64 (:func:`as_targets`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics import TASKS

__all__ = ["FEW", "TASKS", "as_targets", "label_task", "many_values", "targets_task"]

Host = np.ndarray[Any, Any]

FEW = 10
"""Distinct integer labels that are always taken as classes, however few the rows."""


def many_values(distinct: int, n: int) -> bool:
    """Whether ``distinct`` integer labels among ``n`` rows are too many to be taken as
    classes without ``--task``: more than min(100, n/10), and more than :data:`FEW`."""
    return distinct > max(FEW, min(100, n / 10))


def label_task(values: Host, given: str | None, source: str) -> str:
    """The task of the 1-D numeric labels ``values`` (n,) of ``source`` (a file, with the
    column or array): ``given`` (one of :data:`TASKS`) when not None, else "regression" when
    some are not integers, else "classification".

    Raises ValueError naming ``source``, the count of distinct values and both ``--task``
    choices when integers take :func:`many_values`.
    """
    if given is not None:
        return given
    values = np.asarray(values)
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]  # NaN and inf tell nothing: refused either way
        if np.any(finite % 1 != 0):
            return "regression"
    distinct = np.unique(values)
    if many_values(len(distinct), len(values)):
        raise ValueError(
            f"{source} holds {len(distinct):,} distinct integer labels ({distinct[0]:g} to "
            f"{distinct[-1]:g}) in {len(values):,} rows, too many to take as classes unasked: "
            "give --task regression to predict them as numbers, or --task classification if "
            "they are classes"
        )
    return "classification"


def targets_task(y: Host, given: str | None) -> str:
    """The task of targets ``y`` (n, k): ``given`` when not None, else "regression" when some
    lie outside [0, 1] (scores of classes lie inside), else "classification"."""
    if given is not None:
        return given
    return "regression" if y.size and bool(np.min(y) < 0 or np.max(y) > 1) else "classification"


def as_targets(values: Host) -> Host:
    """1-D labels ``values`` (n,) as the targets (n, 1) float64 of a regression."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)

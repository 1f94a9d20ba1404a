"""Labels as a network takes them: class values to output indices and back, and tables
(pandas DataFrames) matched to the network's input columns by name.

A network's classes (:mod:`gpumlp.files.modeldata`) are the class of each output, in order, or
None (the classes are the output indices 0..k-1). Labels (a 1-D ``y``) pass through them:

- with classes, each label is looked up among them (``2.0`` finds the class ``2``; ``"2"``
  does not): a label that is not a class is a ValueError naming it and the classes;
- without classes, numeric labels are output indices (MNIST's digits, every network before
  classes were kept), and so is a 1-D ``y`` of a single output unit (its target column);
- learning (``Network.fit`` on a network without classes), labels that are not all integers in
  [0, k) for the k output units (strings; 1, 2, 3 for 3 units; -1 and 1) become the classes:
  their sorted distinct values, which must number exactly k (2 for one unit). Numbers that are
  no such value (fractions, NaN, 1e300: :func:`~gpumlp.files.modeldata.not_class_labels`) and
  arrays of other kinds (complex) are passed on, for the target checks to refuse.

pandas is never imported here: a DataFrame or Series is told by its module, and only when
pandas is already loaded can one be given.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import to_host
from .files.modeldata import (
    Label,
    check_classes,
    class_indices,
    class_value,
    column_order,
    not_class_labels,
    shown,
)

__all__ = ["decode_labels", "encode_labels", "frame_columns", "frame_names"]

Host = np.ndarray[Any, Any]


def _is_frame(X: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(X, pd.DataFrame)


def frame_names(X: Any) -> tuple[str, ...] | None:
    """The column names of ``X`` when it is a pandas DataFrame whose columns are all named by
    strings; else None."""
    if not _is_frame(X):
        return None
    names = [class_value(c) for c in X.columns]
    return tuple(names) if all(isinstance(c, str) for c in names) else None


def frame_columns(X: Any, features: Sequence[str] | None, *, name: str = "X") -> Any:
    """``X`` with its columns in the order of ``features`` when it is a DataFrame of named
    columns and the network knows its inputs' names; else ``X`` as it is. ValueError naming
    ``name`` and the column for a column missing or one the network does not take."""
    names = frame_names(X)
    if names is None or features is None:
        return X
    order = column_order(names, features, source=name)
    return X if order == list(range(len(names))) else X.iloc[:, order]


def _host_labels(y: Any) -> Host:
    if sys.modules.get("pandas") is not None and hasattr(y, "to_numpy") and not _is_frame(y):
        return np.asarray(y.to_numpy())  # a Series: its values (strings as objects)
    return to_host(y)


def _indices(arr: Host, n_out: int) -> bool:
    """Whether the numeric labels ``arr`` are all output indices: integers in [0, n_out)."""
    if arr.size == 0 or arr.dtype.kind == "b":
        return True
    with np.errstate(invalid="ignore"):
        lo, hi = arr.min(), arr.max()
        whole = arr.dtype.kind != "f" or bool(np.all(arr == np.round(arr)))
    return bool(lo >= 0 and hi < n_out and whole)


def _distinct(arr: Host, name: str) -> tuple[list[Any], Host]:
    """The sorted distinct labels of ``arr`` (as Python values) and each row's index among
    them; TypeError naming ``name`` when they cannot be sorted (strings among numbers)."""
    try:
        values, inverse = np.unique(arr, return_inverse=True)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in arr.tolist()})
        raise TypeError(
            f"{name} mixes labels of several kinds ({', '.join(kinds)}): class labels are all "
            "strings, all numbers or all booleans"
        ) from None
    return [class_value(v) for v in values.tolist()], inverse.reshape(-1)


def _through(arr: Host, classes: tuple[Label, ...], name: str) -> Host:
    """The index among ``classes`` of each label of ``arr``, int64 (n,)."""
    values, inverse = _distinct(arr, name)
    codes = class_indices(values, classes)
    if (missing := codes < 0).any():
        v = values[int(np.argmax(missing))]
        raise ValueError(
            f"{name} holds the label {v!r:.100}, which is not a class of this network: its "
            f"classes are {shown(classes)}"
        )
    return codes[inverse]


def encode_labels(
    y: Any, classes: tuple[Label, ...] | None, n_out: int, *, learn: bool = False, name: str = "y"
) -> tuple[Any, tuple[Label, ...] | None]:
    """``y`` as :func:`gpumlp.prepare.prepare_targets` takes it, and the classes.

    Parameters
    ----------
    y : labels (m,) (any array-like, a pandas Series; a one-column array or DataFrame of names
        is taken as its column) or targets (m, n_out) (passed on as they are)
    classes : the network's classes, or None (its outputs' indices)
    n_out : the network's output units
    learn : without ``classes``, labels that are not output indices become the classes (see
        the module docstring); else they are passed on, for the target checks to refuse

    Returns
    -------
    ``(y, classes)``: labels as int64 output indices (m,) when they went through classes, else
    ``y``; the classes, learnt or as given.

    Raises
    ------
    ValueError naming ``name``: a label that is not a class; learnt classes that do not number
    ``n_out``; strings without classes to find them in. TypeError: labels of mixed kinds.
    """
    arr = _host_labels(y)
    if arr.ndim == 2 and arr.shape[1] == 1 and arr.dtype.kind in "OSU":
        arr = arr[:, 0]  # a column of names (a one-column DataFrame): labels, never targets
    if arr.ndim != 1:
        return y, classes
    if classes is not None:
        return _through(arr, classes, name), classes
    numeric = arr.dtype.kind in "biuf"
    if numeric and (n_out == 1 or not learn or _indices(arr, n_out)):
        return arr, None
    if (numeric and not_class_labels(arr).any()) or arr.dtype.kind not in "biufUSO":
        return arr, None  # no class values: what prepare_targets refuses, it names
    if not learn:
        raise ValueError(
            f"{name} holds labels such as {arr[0]!r:.100}, but this network has no classes to "
            "find them in (its classes are its output indices 0..k-1): fit it on these labels, "
            "or give Network(..., classes=[...])"
        )
    values, inverse = _distinct(arr, name)
    want = 2 if n_out == 1 else n_out
    if len(values) != want:
        raise ValueError(
            f"{name} holds {len(values)} distinct labels ({shown(values, 10)}) for a network of "
            f"{n_out} output unit{'s' if n_out > 1 else ''}: give {want} distinct labels (kept as "
            f"its classes), class indices 0..{n_out - 1}, or the classes with "
            "Network(..., classes=[...])"
        )
    classes = check_classes(values, n_out, name=f"the labels of {name}")
    return inverse.astype(np.int64), classes


def decode_labels(indices: Any, classes: tuple[Label, ...] | None) -> Host:
    """The class of each output index of ``indices`` (m,): a host array of the classes' values
    (strings, numbers or booleans), or the indices themselves (int64) without classes."""
    idx = to_host(indices).astype(np.int64)
    if classes is None:
        return idx
    values: Host = np.asarray(classes)[idx]
    return values

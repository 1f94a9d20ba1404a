"""Data sets from files, as one record: MNIST in any of its formats, or your own table.

:func:`load_data` reads what ``gpumlp train --data`` names and returns a :class:`DataSet`:
training, validation and test splits on the host, the input width, the number of outputs, the
classes of a table's labels (names, or the label values: 1, 2, 3 are three classes), and the
names of a CSV's columns. The format is told by the content, not the name
(:mod:`gpumlp.data.formats`, which also refuses the flags that do not fit it):

* a folder: MNIST IDX files (MNIST, Fashion-MNIST, KMNIST: any 28×28 set in that layout);
* a zip (``.npz``): with ``x_train``, a Keras-style MNIST; with ``X``, a table
  (:func:`gpumlp.data.tabular.read_table_npz`); only the member names are read to tell them apart;
* gzip or a pickle: the book's ``mnist.pkl.gz`` (an IDX file alone: refused, naming it);
* an ``.npy`` file: the inputs X, with ``labels`` naming y.npy (read into memory when it fits
  comfortably, else, or with ``from_disk``, batch by batch from the file as training goes);
* text (``.csv``/``.tsv``/``.txt``, or UTF-8 text not named ``.npz``, ``.npy``, ``.gz``,
  ``.pkl``): a CSV table, ``label_column`` picking the labels.

``val_split`` holds out that fraction of the training rows as the validation split, drawn by
``seed``, for files that have no validation split of their own.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files.modeldata import DataInfo
from ..files.safeio import require_memory
from ..labels import decode_labels
from .csvread import read_csv
from .formats import FORMATS, check_flags, check_mnist_flags, data_format
from .mnist import load_mnist
from .tabular import LEARN, Table, label_classes, read_npy_pair, read_table_npz

__all__ = ["DataSet", "hold_out", "load_data"]

Split = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


@dataclass
class DataSet:
    """A data set ready for training.

    Attributes
    ----------
    name : short name for run folders ("mnist", or the file's stem)
    train : (X (n, d), y (n,) int64 labels or (n, k) targets)
    validation, test : splits like ``train``, or None
    kind : "images" (28×28 pictures: ``predict`` takes them) or "table"
    classes : the class of labels 0..k-1 of a table (names or label values), else None (the
        labels are the outputs' indices: MNIST's digits; targets)
    features, label : a CSV header's names of the input columns and of the label column
    notes : what reading left out, to be said (pandas' index column)
    task : "classification" (labels, or targets (n, k) scored by their largest column) or
        "regression" (targets (n, k) are the values to predict): ``--task``, else told by the
        labels (:mod:`gpumlp.data.task`)
    """

    name: str
    train: Split
    validation: Split | None
    test: Split | None
    kind: str = "images"
    classes: tuple[Any, ...] | None = None
    task: str = "classification"
    features: tuple[str, ...] | None = None
    label: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def n_features(self) -> int:
        """Input width d."""
        return int(self.train[0].shape[1])

    @property
    def n_outputs(self) -> int:
        """Target width k of (n, k) targets; else the classes: those kept, or one more than the
        largest label of any split."""
        ys = [s[1] for s in (self.train, self.validation, self.test) if s is not None]
        if ys[0].ndim == 2:
            return int(ys[0].shape[1])
        if self.classes is not None:
            return len(self.classes)
        return int(max(int(y.max()) for y in ys if y.size) + 1)

    def info(self) -> DataInfo:
        """What a model trained on this data keeps of it (its classes, inputs' names, kind)."""
        return DataInfo(self.classes, self.features, self.kind, self.label)

    @typing.overload
    def valued(self, split: Split) -> Split: ...
    @typing.overload
    def valued(self, split: None) -> None: ...
    def valued(self, split: Split | None) -> Split | None:
        """``split`` with its labels as the classes' values (``"setosa"``, ``3``), as a
        network holding the classes takes them; as it is without classes."""
        if split is None or self.classes is None or split[1].ndim != 1:
            return split
        return split[0], decode_labels(split[1], self.classes)

    def limited(self, limit: int | None) -> DataSet:
        """The same data with only the first ``limit`` training examples."""
        if limit is None:
            return self
        X, y = self.train
        return dataclasses.replace(self, train=(X[:limit], y[:limit]))


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
    """Split ``(X (n, d), y)`` into training and validation rows: ``round(fraction·n)``
    rows drawn by ``default_rng(seed)`` (the same seed holds out the same rows), both parts
    in file order. The parts are copies (of a memory-mapped X too)."""
    X, y = split
    n = len(X)
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise ValueError(
            f"--val-split {fraction:g} of {n} rows holds out {n_val}: it must leave at least one "
            "row for validation and one for training"
        )
    require_memory(X.nbytes + y.nbytes, f"--val-split of X {X.shape} {X.dtype}")
    perm = np.random.default_rng(seed).permutation(n)
    train, val = np.sort(perm[n_val:]), np.sort(perm[:n_val])
    return (X[train], y[train]), (X[val], y[val])


def load_data(
    data: str | None,
    *,
    labels: str | None = None,
    label_column: str | int | None = None,
    val_split: float | None = None,
    seed: int = 0,
    drop: Sequence[str | int] | None = None,
    classes: Any = LEARN,
    from_disk: bool = False,
    dtype: str | None = None,
    standardize: bool = False,
    task: str | None = None,
) -> DataSet:
    """Read the data set ``gpumlp train --data`` names (see the module docstring).

    Parameters
    ----------
    data : a file or folder; None is MNIST from the cache
    labels : with ``data`` an X.npy, the y.npy of its labels (n,) or targets (n, k)
    label_column : with a CSV, the label column: a header's name or a 0-based index (negative
        counts from the end); default the last column
    val_split : fraction in (0, 1) of the training rows to hold out as the validation split,
        for data without one
    seed : seeds the rows ``val_split`` holds out
    drop : with a CSV, columns to leave out, by header name or 0-based index
    classes : a table's classes (:func:`~gpumlp.data.tabular.label_classes`): ``"learn"``,
        those of its training split, to train on; a trained model's classes, to score it;
        None, a model's without classes (labels are its outputs' indices)
    from_disk : with ``data`` an X.npy, read X from its file batch by batch as training goes,
        not into memory (which happens anyway when X does not fit in half the memory free)
    dtype, standardize : the network's dtype and whether its inputs are standardized: with
        an X.npy, the copy training makes of X (when its dtype differs, or standardized) counts
        beside X when deciding whether it fits in memory (None: no copy counted)
    task : "classification" or "regression" (``--task``, or a trained network's); None: told
        by the labels (:mod:`gpumlp.data.task`)

    Raises
    ------
    FileNotFoundError naming the file; ValueError naming the file (row, column, array) or the
    flag that does not fit the data.
    """
    if data is None:
        check_mnist_flags(labels, label_column, val_split, drop, from_disk=from_disk, task=task)
        return DataSet("mnist", *load_mnist(None), kind="images")
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"--data {str(data)!r} does not exist; it takes {FORMATS}")
    fmt = data_format(path)
    check_flags(fmt, str(path), labels, label_column, drop, from_disk=from_disk, task=task)
    name = path.stem.split(".")[0] or "data"
    if fmt == "mnist":
        table, kind = Table(*load_mnist(path)), "images"
    elif fmt == "npz":
        table, kind = read_table_npz(path, task), "table"
    elif fmt == "npy":
        y_path = Path(str(labels)).expanduser()
        if not y_path.is_file():
            raise FileNotFoundError(f"--labels {str(labels)!r} does not exist or is not a file")
        table = read_npy_pair(
            path, y_path, task, from_disk=from_disk, dtype=dtype, standardize=standardize
        )
        kind = "table"
    else:
        table, kind = read_csv(path, label_column, drop=drop or (), task=task), "table"
    train, validation = table.train, table.validation
    if val_split is not None:
        if validation is not None:
            held = "X_val" if fmt == "npz" else "the last sixth of its training images"
            raise ValueError(
                f"--val-split: {path} already has a validation split ({held}); leave "
                "--val-split out"
            )
        train, validation = hold_out(train, val_split, seed)
    known = None
    if kind == "table":
        splits = {"training": train, "validation": validation, "test": table.test}
        source = str(labels if fmt == "npy" else path)
        coded, known = label_classes(source, splits, table.classes, classes)
        train, validation = typing.cast(Split, coded["training"]), coded["validation"]
        table.test = coded["test"]
    return DataSet(name, train, validation, table.test, kind, known, table.task, table.features,
                   table.label, table.notes)  # fmt: skip

"""Data sets from files, as one record: MNIST in any of its formats, or your own table.

:func:`load_data` reads what ``gpumlp train --data`` names and returns a :class:`DataSet`:
training, validation and test splits on the host, the input width, the number of outputs, and
which split is scored after each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import load_mnist

__all__ = ["DataSet", "load_data"]

Split = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]


@dataclass
class DataSet:
    """A data set ready for training.

    Attributes
    ----------
    name : short name for run folders ("mnist", or the file's stem)
    train : (X (n, d), y (n,) labels or (n, k) targets)
    validation, test : splits like ``train``, or None
    kind : "images" (28×28 digits: ``predict`` takes pictures) or "table"
    """

    name: str
    train: Split
    validation: Split | None
    test: Split | None
    kind: str = "images"

    @property
    def n_features(self) -> int:
        """Input width d."""
        return int(self.train[0].shape[1])

    @property
    def n_outputs(self) -> int:
        """Classes (labels 0..k-1 in any split) or target width."""
        ys = [s[1] for s in (self.train, self.validation, self.test) if s is not None]
        if ys[0].ndim == 2:
            return int(ys[0].shape[1])
        return int(max(int(y.max()) for y in ys if y.size) + 1)

    def limited(self, limit: int | None) -> DataSet:
        """The same data with only the first ``limit`` training examples."""
        if limit is None:
            return self
        X, y = self.train
        return DataSet(self.name, (X[:limit], y[:limit]), self.validation, self.test, self.kind)


def load_data(data: str | None) -> DataSet:
    """Read the data set ``gpumlp train --data`` names: None is MNIST from the cache."""
    train, validation, test = load_mnist(data)
    name = "mnist" if data is None else Path(data).stem.split(".")[0] or "mnist"
    return DataSet(name, train, validation, test, "images")

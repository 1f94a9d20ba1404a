"""``MLPClassifier``: a gpumlp network as a scikit-learn classifier (see :mod:`gpumlp.sklearn`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets

from ..model import Network
from ._base import Host, TableMLP

__all__ = ["MLPClassifier"]


class MLPClassifier(ClassifierMixin, TableMLP):
    """A multilayer perceptron classifier trained by gpumlp, with scikit-learn's interface.

    ``classes_`` are the sorted distinct labels of ``y`` (strings, integers such as 1..3, any
    values NumPy can sort); ``predict`` returns labels from them and ``predict_proba`` one
    column per class, in that order, as host NumPy arrays whatever the backend.

    Parameters
    ----------
    hidden : sequence of int, the hidden layers' widths
    activation, output_activation, cost, init, dtype, backend : the network's settings, as
        :class:`gpumlp.Network` takes them
    lr, batch_size, epochs, optimizer, momentum, l2, l1, dropout, schedule, patience, stop_on,
    shuffle, engine : training settings, as :meth:`gpumlp.Network.fit` takes them
    standardize : bool, standardize the inputs by the training rows' mean and std
        Each of the above left at None takes gpumlp's default for a table, the same as
        ``gpumlp train --data FILE`` (:mod:`gpumlp.tabledefaults`): one hidden layer of
        2·(inputs + classes) units in [32, 256], ReLU, softmax with log-likelihood, He
        initialisation, Adam, standardized inputs, early stopping on the validation cost.
    validation_fraction : float in [0, 1), the rows held out for early stopping (0: none,
        no early stopping, all ``epochs`` trained)
    random_state : None, int or RandomState: seeds the initial weights, the epoch orders and
        the held-out rows
    verbose : 0 (silent), 1 or 2, as :meth:`gpumlp.Network.fit`

    Attributes
    ----------
    classes_ : array (k,), the labels
    network_ : the trained :class:`gpumlp.Network`; history_ : its :class:`gpumlp.History`
    n_iter_ : int, epochs trained; n_features_in_, feature_names_in_ : as scikit-learn's
    """

    _task = "classification"

    def _learn_targets(self, y: Any) -> None:
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y holds one class ({self.classes_.tolist()[0]!r}): a classifier needs at least "
                "2 classes"
            )

    def _encode(self, y: Any) -> Host:
        """``y`` checked to hold classes only; the network maps them to its outputs through
        its own classes, ``classes_`` (:meth:`_network`)."""
        check_classification_targets(y)
        y = np.asarray(y)
        try:
            index = np.minimum(np.searchsorted(self.classes_, y), len(self.classes_) - 1)
            unseen = self.classes_[index] != y
        except TypeError:  # labels of another type than the classes' (str among ints)
            unseen = np.ones(len(y), bool)
        if np.any(unseen):
            raise ValueError(
                f"y holds labels that are not classes of this classifier: "
                f"{list(dict.fromkeys(y[unseen].tolist()))[:5]}; its classes are "
                f"{self.classes_.tolist()}"
            )
        labels: Host = y
        return labels

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _network(self, settings: dict[str, Any], seed: int) -> Network:
        """The network, which keeps ``classes_`` as its classes (in its file and pickles)."""
        net = super()._network(settings, seed)
        net.classes = self.classes_.tolist()
        return net

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch on ``X`` (n, d) and ``y`` (n,), going on from the last call (or fit).
        The first call must name every class in ``classes``; the inputs are standardized by
        its rows' mean and standard deviation."""
        first = not hasattr(self, "network_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = self._validate(X, y, reset=first)
        if first:
            self._learn_targets(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={list(np.unique(classes))} is not the classes of the first call to "
                f"partial_fit (or fit): {list(self.classes_)}"
            )
        self._partial_fit(X, y, first)
        return self

    def predict_proba(self, X: Any) -> Host:
        """Each row's probability of each class: (m, k) float64, rows summing to 1, columns in
        the order of ``classes_``."""
        a = np.clip(self._outputs(X), 0.0, None)
        total = np.sum(a, axis=1, keepdims=True)
        proba: Host = np.divide(a, total, out=np.full_like(a, 1.0 / a.shape[1]), where=total > 0)
        return proba

    def predict(self, X: Any) -> Host:
        """The most probable class of each row: (m,), labels from ``classes_``."""
        best = np.argmax(self._outputs(X), axis=1)  # NotFittedError first, when not fitted
        labels: Host = self.classes_[best]
        return labels

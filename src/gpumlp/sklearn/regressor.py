"""``MLPRegressor``: a gpumlp network as a scikit-learn regressor (see :mod:`gpumlp.sklearn`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..targets import TargetScaling
from ._base import Host, TableMLP

__all__ = ["MLPRegressor"]


class MLPRegressor(RegressorMixin, TableMLP):
    """A multilayer perceptron regressor trained by gpumlp, with scikit-learn's interface.

    A regression network (``task="regression"``): identity outputs and the quadratic cost by
    default; with ``standardize`` (the default) the targets are standardized for training and
    ``predict`` answers in their units (the network's
    :class:`~gpumlp.targets.TargetScaling`), as are the inputs. A 1-D ``y`` gives 1-D
    predictions; ``y`` (n, k) gives (n, k). Outputs are float64 host NumPy arrays whatever the
    backend.

    Parameters
    ----------
    As :class:`gpumlp.sklearn.MLPClassifier`'s; left at None, each takes gpumlp's default for
    a regression table (:mod:`gpumlp.tabledefaults`).

    Attributes
    ----------
    n_outputs_ : int, target columns; target_scaling_ : the network's TargetScaling, or None
    network_, history_, n_iter_, n_features_in_, feature_names_in_ : as the classifier's
    """

    _task = "regression"

    def _y_checks(self) -> dict[str, Any]:
        return {"multi_output": True, "y_numeric": True}

    def _learn_targets(self, y: Any) -> None:
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1
        self.n_outputs_ = y.reshape(len(y), -1).shape[1]

    def _encode(self, y: Any) -> Host:
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if y2.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2.shape[1]} target columns, the model {self.n_outputs_}")
        return y2  # standardized by the network, which learns their mean and std

    @property
    def target_scaling_(self) -> TargetScaling | None:
        """The network's standardization of the targets (None: learnt as they are)."""
        check_is_fitted(self, "network_")
        scaling: TargetScaling | None = self.network_.target_scaling
        return scaling

    def _n_outputs(self) -> int:
        return int(self.n_outputs_)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch on ``X`` (n, d) and ``y``, going on from the last call (or fit); the
        first call's rows set the input and target scaling."""
        first = not hasattr(self, "network_")
        X, y = self._validate(X, y, reset=first)
        if first:
            self._learn_targets(y)
        self._partial_fit(X, y, first)
        return self

    def predict(self, X: Any) -> Host:
        """The predicted targets: (m,) float64 for a 1-D ``y``, else (m, k)."""
        a = self._outputs(X)
        return a[:, 0] if self._y_1d else a

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

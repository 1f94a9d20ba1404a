"""What the two estimators share: their parameters, the settings they resolve from them, the
network they train, how it is pickled, and the one-epoch step of ``partial_fit``.

Every parameter that names a setting defaults to None, which means the setting's default for
a table (:meth:`gpumlp.setting.Setting.default_for` with this data: the rules of
:mod:`gpumlp.tabledefaults`, as ``gpumlp train --data FILE`` takes them), so there is no
second copy of a default here. ``fit`` holds out ``validation_fraction`` of the rows (seeded
by ``random_state``) as the validation split that early stopping watches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ..backend import to_host
from ..config import TrainConfig
from ..data.sources import hold_out
from ..loader import network_from
from ..metrics import scored_keys
from ..model import Network
from ..runstate import TrainState
from ..settings import SETTINGS
from ..train import train_network

__all__ = ["PARAMS", "TableMLP", "TableShape"]

Host = np.ndarray[Any, Any]

PARAMS = ("hidden", "activation", "output_activation", "cost", "init", "dtype", "backend",
          "lr", "batch_size", "epochs", "optimizer", "momentum", "l2", "l1", "dropout",
          "schedule", "patience", "stop_on", "shuffle", "engine", "standardize")  # fmt: skip
"""The settings the estimators take as parameters, under their own names."""
_NETWORK = ("activation", "output_activation", "cost", "init", "dtype", "backend")
_FIT = tuple(p for p in PARAMS if p not in (*_NETWORK, "hidden", "standardize"))


@dataclass(frozen=True)
class TableShape:
    """The estimators' data as the table defaults read it (a
    :class:`gpumlp.tabledefaults.DataShape`)."""

    n_features: int
    n_outputs: int
    task: str
    validation: Any
    kind: str = "table"


class TableMLP(BaseEstimator):
    """The estimators' common part (see the module docstring); subclasses say the task and
    turn ``y`` into what the network learns (:meth:`_targets`) and back."""

    _task = "classification"

    def __init__(
        self,
        hidden: Any = None,
        *,
        activation: str | None = None,
        output_activation: str | None = None,
        cost: str | None = None,
        init: str | None = None,
        dtype: str | None = None,
        backend: Any = None,
        lr: float | None = None,
        batch_size: int | None = None,
        epochs: int | None = None,
        optimizer: str | None = None,
        momentum: float | None = None,
        l2: float | None = None,
        l1: float | None = None,
        dropout: float | None = None,
        schedule: str | None = None,
        patience: int | None = None,
        stop_on: str | None = None,
        shuffle: bool | None = None,
        engine: str | None = None,
        standardize: bool | None = None,
        validation_fraction: float = 0.1,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.output_activation = output_activation
        self.cost = cost
        self.init = init
        self.dtype = dtype
        self.backend = backend
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.optimizer = optimizer
        self.momentum = momentum
        self.l2 = l2
        self.l1 = l1
        self.dropout = dropout
        self.schedule = schedule
        self.patience = patience
        self.stop_on = stop_on
        self.shuffle = shuffle
        self.engine = engine
        self.standardize = standardize
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose

    # -- what subclasses say -------------------------------------------------------------------

    def _learn_targets(self, y: Any) -> None:
        """Take what ``y`` says once for the model: the classes, or the targets' width and
        scaling (from fit's ``y``, or the first partial_fit's)."""
        raise NotImplementedError

    def _encode(self, y: Any) -> Host:
        """``y`` as the network takes it: labels (n,) of its classes, or targets (n, k)
        float64."""
        raise NotImplementedError

    def _n_outputs(self) -> int:
        raise NotImplementedError

    def _y_checks(self) -> dict[str, Any]:
        """What :func:`~sklearn.utils.validation.validate_data` checks of ``y``."""
        return {}

    def _validate(self, X: Any, y: Any, *, reset: bool) -> tuple[Host, Any]:
        X, y = validate_data(self, X, y, reset=reset, dtype=[np.float64, np.float32],
                             **self._y_checks())  # fmt: skip
        return X, y

    # -- settings ------------------------------------------------------------------------------

    def _settings(self, shape: TableShape) -> dict[str, Any]:
        """Each parameter's value: its own, or the setting's default for ``shape``."""
        out = {}
        for name in PARAMS:
            value = getattr(self, name)
            out[name] = SETTINGS[name].default_for(shape) if value is None else value
        return out

    def _seed(self) -> int:
        """The seed of the network and its epoch orders, drawn from ``random_state``."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _network(self, settings: dict[str, Any], seed: int) -> Network:
        sizes = [self.n_features_in_, *list(settings["hidden"] or ()), self._n_outputs()]
        return Network(sizes, **{k: settings[k] for k in _NETWORK}, task=self._task, seed=seed)

    def _validation(self, X: Host, y: Host, seed: int) -> tuple[Any, Any]:
        """``(training rows, validation rows or None)``: ``validation_fraction`` of the rows
        held out (:func:`gpumlp.data.sources.hold_out`), none when that leaves either part
        empty or the fraction is 0."""
        fraction = self.validation_fraction
        if not isinstance(fraction, int | float) or not 0 <= fraction < 1:
            raise ValueError(f"validation_fraction must lie in [0, 1), got {fraction!r}")
        n_val = round(fraction * len(X))
        if not 0 < n_val < len(X):
            return (X, y), None
        return hold_out((X, y), float(fraction), seed)

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> TableMLP:
        """Train a new network on ``X`` (n, d) and ``y``; returns the estimator."""
        X, y = self._validate(X, y, reset=True)
        self._learn_targets(y)
        y = self._encode(y)
        seed = self._seed()
        train, validation = self._validation(X, y, seed)
        shape = TableShape(X.shape[1], self._n_outputs(), self._task, validation)
        settings = self._settings(shape)
        watches = settings["patience"] is not None or settings["schedule"] == "plateau"
        if watches and validation is None:
            raise ValueError(
                "patience and schedule='plateau' watch a validation split: set "
                f"validation_fraction above 0 (it is {self.validation_fraction!r}, of "
                f"{len(X)} rows)"
            )
        self.network_, self._fit_settings = self._network(settings, seed), settings
        monitor = ["train_cost"]  # and, with a validation split, its cost and scores
        if validation is not None:
            monitor += scored_keys(self._task)
        self.history_ = self.network_.fit(
            *train, validation_data=validation, seed=seed, verbose=self.verbose,
            standardize=settings["standardize"], monitor=monitor,
            **{k: settings[k] for k in _FIT},
        )  # fmt: skip
        self.n_iter_ = len(self.history_)
        self._state: TrainState | None = None
        return self

    def _partial_fit(self, X: Host, y: Any, first: bool) -> TableMLP:
        """One epoch over ``X`` and ``y`` (checked; on the ``first`` call, the targets already
        learnt), the optimizer's state kept from call to call; the inputs are standardized by
        the first call's mean and standard deviation."""
        y = self._encode(y)
        if first or getattr(self, "_state", None) is None:
            seed = self._seed()
            if first:
                shape = TableShape(X.shape[1], self._n_outputs(), self._task, None)
                self._fit_settings = self._settings(shape)
                self.network_ = self._network(self._fit_settings, seed)
            settings, net = self._fit_settings, self.network_
            data = net.inputs.data(X, y, fit_standardization=first and settings["standardize"])
            config = TrainConfig(**{k: settings[k] for k in _FIT} | {"epochs": 1,
                                 "patience": None, "monitor": ("train_cost",)})  # fmt: skip
            state = TrainState.start(net.spec, net.params, config, np.random.default_rng(seed),
                                     inputs=net.inputs.arrays(), seed=seed)  # fmt: skip
            self._state, self.history_ = state, state.history
        else:
            data = self.network_.inputs.data(X, y)
            assert self._state is not None
            state = self._state
            state.config = dataclasses.replace(state.config, epochs=state.epoch + 1)
        train_network(state, data, None)
        self.n_iter_ = len(self.history_)
        return self

    # -- outputs -------------------------------------------------------------------------------

    def _outputs(self, X: Any) -> Host:
        """The network's outputs (m, n_outputs) for ``X`` (a regression's in the targets'
        units), a float64 host array."""
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        net = self.network_
        a = net.predict_values(X) if net.task == "regression" else net.feedforward(X)
        return to_host(a).astype(np.float64)

    # -- pickling: the network as the model file's metadata and arrays --------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_state", None)  # a partial_fit's optimizer state: the next call starts anew
        net = state.pop("network_", None)
        if net is not None:
            state["_network_file"] = net.file_parts()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        saved = state.pop("_network_file", None)
        self.__dict__.update(state)
        if saved is not None:
            meta, arrays = saved
            self.network_ = network_from(meta, arrays, "<pickled estimator>",
                                         backend=self.backend or "auto")  # fmt: skip

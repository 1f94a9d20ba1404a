"""The user-facing :class:`Network`: a model spec and its parameters, delegating all math.

``Network`` builds a :class:`~gpumlp.config.ModelSpec` (where its arguments are checked) and
draws :class:`~gpumlp.network.Params`; ``fit`` builds a :class:`~gpumlp.config.TrainConfig`
and runs :func:`gpumlp.train.run_epochs` over a :class:`~gpumlp.runstate.TrainState`. Arrays it
returns belong to its backend (NumPy or CuPy arrays), except the class values
:meth:`Network.predict_classes` returns (host NumPy arrays).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ._checks import check_int, check_params, count_rows
from .backend import Array, to_device
from .config import DEFAULT_CHUNK, ModelSpec, TrainConfig, monitors
from .distributed.comm import Comm, rank_of
from .engines.steps import predict_labels
from .files.checkpoint import write_checkpoint
from .files.modelfile import model_meta, params_to_host
from .history import History
from .initial import init_params
from .inputs import Inputs
from .labels import decode_labels
from .memory import check_model_fits, check_training_fits
from .network import Params, backprop, feedforward
from .reporting import fit_display, summary_text
from .runstate import TrainState
from .settings import DEFAULTS as D
from .settings import SETTINGS
from .train import evaluate_arrays, train_network

__all__ = ["Network"]


class Network:
    """A fully connected network trained by backpropagation.

    Parameters
    ----------
    sizes : sequence of int, units per layer, input first: ``[784, 30, 10]``
    task : "classification" (None: outputs score classes) or "regression" (outputs are values:
        ``predict`` gives them, scored by MSE, MAE and R²; ``standardize`` scales them too)
    activation : hidden activation: "sigmoid", "relu", "tanh" or "identity"
    output_activation : default the same as ``activation``; adds "softmax"
    cost : "quadratic", "cross_entropy" (sigmoid or softmax outputs) or "log_likelihood"
        (softmax outputs)
    init : "normal" (N(0, 1), the book's network.py), "scaled" (N(0, 1/n_in) weights,
        network2.py) or "he" (N(0, 2/n_in) weights, zero biases; for ReLU)
    dtype : "float32" or "float64"
    backend : "auto", "numpy", "cupy" or an array-API namespace module
    seed : int, seeds the host RNG of the initial weights (and, unless ``fit`` gets its own, the
        epoch orders); drawn at random when None, and kept in ``seed`` so the run can be
        repeated. The same seed gives the same numbers on every backend.
    classes : each output's class, in order (two for one unit): names or label values; None:
        the outputs' indices, or the labels ``fit`` learns (see :meth:`fit`)
    features : the ``sizes[0]`` input columns' names, by which DataFrames are then taken

    Attributes
    ----------
    weights, biases : lists, ``weights[l]`` (sizes[l+1], sizes[l]), ``biases[l]`` (sizes[l+1],)
    spec : the ModelSpec; xp : the namespace; dtype : its dtype object; seed : int
    input_mean, input_std : host arrays (sizes[0],) when ``fit(standardize=True)`` set them
    target_scaling : a regression's :class:`~gpumlp.targets.TargetScaling`, set likewise
    classes, features : as above (kept in model files); data_kind : "images", "table" or None
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        task: str | None = D["task"],
        activation: str = D["activation"],
        output_activation: str | None = D["output_activation"],
        cost: str = D["cost"],
        init: str = D["init"],
        dtype: str = D["dtype"],
        backend: str | ModuleType = D["backend"],
        seed: int | None = D["seed"],
        classes: Sequence[Any] | None = None,
        features: Sequence[str] | None = None,
    ) -> None:
        self.spec = ModelSpec.build(sizes, activation=activation, cost=cost, init=init,
                                    output_activation=output_activation, dtype=dtype,
                                    backend=backend, task=task)  # fmt: skip
        spec, check = self.spec, SETTINGS["seed"].check
        self.seed: int | None = secrets.randbelow(2**32) if seed is None else check(seed)
        check_model_fits(spec.sizes, spec.dtype, spec.xp)
        self._rng = np.random.default_rng(self.seed)
        self.params = init_params(spec.sizes, init, self._rng, dtype=spec.dtype, xp=spec.xp)
        self.inputs = Inputs(self.spec)
        self.inputs.describe(classes=classes, features=features)

    @classmethod
    def from_parts(cls, spec: ModelSpec, params: Params, inputs: Inputs | None = None) -> Network:
        """A network of an already built spec, parameters and input edge (standardizations,
        classes, inputs' names), as :func:`gpumlp.load` makes one; its seed is unknown."""
        net = cls.__new__(cls)
        net.spec, net.params, net.seed = spec, params, None
        net._rng = np.random.default_rng()
        net.inputs = Inputs(spec) if inputs is None else inputs
        return net

    sizes = property(lambda self: list(self.spec.sizes), doc="Units per layer, input first.")
    xp = property(lambda self: self.spec.xp, doc="The array namespace.")
    dtype = property(lambda self: self.spec.xp_dtype, doc="The namespace's dtype object.")
    cost = property(lambda self: self.spec.cost, doc="The Cost.")
    init = property(lambda self: self.spec.init, doc="The initialisation's name.")
    backend = property(lambda self: self.spec.backend, doc='"numpy", "cupy" or a module name.')
    activation = property(lambda self: self.spec.activation, doc="Hidden activation's name.")
    output_activation = property(lambda self: self.spec.output_activation, doc="Output's name.")
    task = property(lambda self: self.spec.task, doc='"classification" or "regression".')
    weights = property(lambda self: self.params.weights, doc="``weights[l]`` (n_{l+1}, n_l).")
    biases = property(lambda self: self.params.biases, doc="``biases[l]`` (n_{l+1},).")

    def __repr__(self) -> str:
        return self.spec.describe()

    def summary(self) -> str:
        """A table of the layers (weight shape, activation, parameters), the total parameter
        count, cost, dtype, backend and input standardization, as text (not printed)."""
        return summary_text(self.spec, standardized=self.standardized)

    standardized = property(lambda self: self.inputs.standardized, doc="Inputs standardized?")
    input_mean = property(lambda self: self.inputs.mean, doc="Standardization mean (n_0,).")
    input_std = property(lambda self: self.inputs.std, doc="Standardization std (n_0,).")
    target_scaling = property(lambda self: self.inputs.scaling, doc="A regression's targets'.")
    features = property(lambda self: self.inputs.info.features, doc="Input columns' names.")
    classes = property(
        lambda self: self.inputs.info.classes,
        lambda self, values: self.inputs.describe(classes=values),
        doc="Each output's class (a name or label value); None: its index.",
    )
    data_kind = property(
        lambda self: self.inputs.info.kind,
        lambda self, kind: self.inputs.describe(kind=kind),
        doc='What the inputs are: "images" (28×28), "table" (rows) or None.',
    )

    def load_params(self, weights: Sequence[Any], biases: Sequence[Any]) -> None:
        """Copy parameters in from array-likes (host or device): ``weights[l]`` of shape
        (sizes[l+1], sizes[l]), ``biases[l]`` (sizes[l+1],) or the book's (sizes[l+1], 1).
        ValueError/TypeError naming the tensor on a wrong count, shape or non-finite value."""
        new = check_params(self.sizes, weights, biases, self.spec.dtype)
        for i, t in enumerate(new):
            self.params.set(i, to_device(t, self.xp))

    # -- math, delegated ----------------------------------------------------------------------

    def feedforward(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> Array:
        """Outputs for inputs ``X`` (m, sizes[0]) -> array (m, sizes[-1]), in chunks of rows."""
        X, chunk = self.inputs.x(X), check_int("chunk", chunk)
        n, acts, xp = X.shape[0], self.spec.activations, self.xp
        outs = [feedforward(self.params, X[k : min(k + chunk, n), ...], activations=acts, xp=xp)
                for k in range(0, n, chunk)]  # fmt: skip
        return outs[0] if len(outs) == 1 else self.xp.concat(outs, axis=0)

    def predict(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> Array:
        """Class index of each row of ``X`` (m, sizes[0]) -> int64 array (m,); for a
        regression network, the predicted values (:meth:`predict_values`)."""
        if self.task == "regression":
            return self.predict_values(X, chunk=chunk)
        return predict_labels(self.feedforward(X, chunk=chunk), xp=self.xp)

    def predict_values(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> Array:
        """A regression's predicted values for each row of ``X`` (m, sizes[0]): (m, sizes[-1]),
        in the targets' units (float64, scaled back, when it learnt them standardized).
        ValueError for a classification network, whose outputs are scores of classes."""
        return self.inputs.values(self.feedforward(X, chunk=chunk))

    def predict_classes(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> np.ndarray[Any, Any]:
        """Class of each row of ``X`` as its value (:attr:`classes`; the index without them):
        a host NumPy array (m,) of strings, numbers or booleans, whatever the backend.
        ValueError for a regression network, which has no classes."""
        if self.task == "regression":
            raise ValueError("predict_classes is for classes; a regression network has none")
        return decode_labels(self.predict(X, chunk=chunk), self.classes)

    def predict_proba(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> Array:
        """Class scores of each row of ``X``: (m, sizes[-1]); with one output unit (m, 2) as
        ``[1 − a, a]``. Probabilities (rows summing to 1) for a softmax output; for sigmoid
        outputs each column is its own class's score in (0, 1). ValueError for a regression
        network, which has no classes."""
        if self.task == "regression":
            raise ValueError("predict_proba is for classes; a regression network has none")
        a = self.feedforward(X, chunk=chunk)
        return self.xp.concat([1.0 - a, a], axis=1) if a.shape[1] == 1 else a

    def gradients(self, X: Any, y: Any) -> tuple[list[Array], list[Array]]:
        """Gradient of the batch-mean cost at ``X`` (m, sizes[0]) and labels or targets ``y``:
        ``(grads_w, grads_b)`` shaped like ``weights`` and ``biases``, for the whole batch."""
        X, Y, _ = self.inputs.data(X, y)
        grads, _ = backprop(
            self.params, X, Y, activations=self.spec.activations, cost=self.cost, xp=self.xp
        )
        return grads.weights, grads.biases

    def evaluate(self, X: Any, y: Any, *, chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
        """``{"cost", "accuracy", "n"}`` on ``X`` (m, sizes[0]) and labels (m,) (through
        :attr:`classes`) or targets (m, n_out); accuracy: the rows whose class is the label.
        For a regression network ``{"cost", "mse", "mae", "r2", "n"}``, the scores in the
        targets' units (:mod:`gpumlp.metrics`)."""
        X, Y, labels = self.inputs.data(X, y)
        std = None if self.inputs.scaling is None else self.inputs.scaling.std
        scores = evaluate_arrays(self.spec, self.params, X, Y, labels,
                                 chunk=check_int("chunk", chunk), target_std=std)  # fmt: skip
        return scores | {"n": int(X.shape[0])}

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = D["epochs"],
        batch_size: int = D["batch_size"],
        lr: float = D["lr"],
        shuffle: bool = D["shuffle"],
        validation_data: tuple[Any, Any] | None = None,
        seed: int | None = D["seed"],
        optimizer: str = D["optimizer"],
        momentum: float = D["momentum"],
        l2: float = D["l2"],
        l1: float = D["l1"],
        dropout: float = D["dropout"],
        schedule: str = D["schedule"],
        patience: int | None = D["patience"],
        stop_on: str = D["stop_on"],
        monitor: Iterable[str] = D["monitor"],
        checkpoint: str | Path | None = D["checkpoint"],
        checkpoint_every: int | None = D["checkpoint_every"],
        resume: str | Path | None = None,
        engine: str = D["engine"],
        standardize: bool = D["standardize"],
        scored: str = "validation",
        verbose: int = 0,
        progress: Callable[..., Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        comm: Comm | None = None,
    ) -> History:
        """Train by mini-batch gradient descent on ``X`` (n, sizes[0]) and ``y`` (labels (n,)
        or targets (n, sizes[-1])); the defaults are the book's (30 epochs, batch 10, lr 3.0).

        Labels (a pandas Series too) go through :attr:`classes`; a network without them takes
        integer labels in [0, k) for its k outputs as their indices, and learns other labels
        (strings; 1, 2, 3 for 3 outputs) as its classes, their k sorted distinct values
        (:mod:`gpumlp.labels`). A DataFrame ``X`` names the :attr:`features` when unnamed.

        ``lr`` is η: each step is ``w -= lr · ∂C/∂w`` for the batch-mean C. ``validation_data``
        ``(X_val, y_val)`` is scored after each epoch (``scored`` names it: "validation" or
        "test"). ``seed`` seeds the epoch orders (default: the network's RNG; a network of
        unknown seed, as :func:`gpumlp.load` gives, draws one); the History records it.
        ``l2``/``l1``: the book's (λ/n)·W and (λ/n)·sgn(W); ``dropout``: inverted, on hidden
        layers; ``patience``: early stopping (or the plateau schedule) on ``stop_on``,
        "val_accuracy" (the book's) or "val_cost" (a regression's); ``monitor``: names from
        :data:`gpumlp.config.MONITORS`; ``checkpoint`` written every ``checkpoint_every``
        epochs, on interruption and at the end; ``resume`` a checkpoint to continue from;
        ``standardize``: subtract the training inputs' mean and divide by their standard
        deviation (kept, applied wherever the network takes inputs; a regression's targets
        too, its predictions scaled back). The other settings' choices (``optimizer``,
        ``schedule``, ``engine``) are :data:`gpumlp.settings.SETTINGS`'.
        ``verbose``: 0, the default, prints nothing; 1 a Keras-style line per epoch on stdout
        (``Epoch 3: train_cost 0.0612 - val_cost 0.0731 - val_accuracy 0.9412 (0.61 s)``)
        and a per-batch bar when stdout is a terminal; 2 the lines only. ``progress``: a
        factory ``progress(total=, desc=)`` of a per-batch bar; ``on_epoch`` is called with
        each epoch's record. ``comm`` (:func:`gpumlp.distributed.world`): every rank of an MPI
        job trains, on the same arguments; rank 0 alone checkpoints and shows output.

        Returns the History. Raises DivergedError (NaN/inf or runaway weights; the last finite
        epoch's weights are kept and checkpointed), TrainingInterrupted (Ctrl-C, SIGTERM or
        SIGHUP; the last finished epoch is kept and checkpointed), OutOfMemory (before training
        when it cannot fit, or when a batch fails; the message says what fits), DataFileShrank
        (X read from its file as it is used, cut short: kept and checkpointed as for Ctrl-C).
        """
        cfg = TrainConfig(
            epochs=epochs, batch_size=batch_size, lr=lr, shuffle=shuffle, seed=seed,
            optimizer=optimizer, momentum=momentum, l2=l2, l1=l1, dropout=dropout,
            schedule=schedule, patience=patience, stop_on=stop_on, monitor=monitors(monitor),
            checkpoint=None if checkpoint is None or rank_of(comm) else Path(checkpoint),
            checkpoint_every=checkpoint_every, engine=engine, chunk=DEFAULT_CHUNK,
        )  # fmt: skip
        cfg.check_validation(validation_data is not None)
        cfg.check_task(self.task)
        verbose = 0 if rank_of(comm) else verbose  # rank 0 alone shows the run
        progress, on_epoch = fit_display(verbose, progress, on_epoch, scored=scored)
        standardize = SETTINGS["standardize"].check(standardize)
        n = count_rows("X", X)
        check_training_fits(
            self.spec.sizes, self.spec.dtype, self.xp, optimizer=cfg.optimizer,
            batch_size=cfg.batch_size, n=n, dropout=cfg.dropout,
            early_stopping=cfg.patience is not None,
            copies_inputs=self.inputs.copies(X, standardize=standardize),
            n_val=count_rows("validation_data", validation_data, pair=True), chunk=cfg.chunk,
        )  # fmt: skip
        data = self.inputs.data(
            X, y, fit_standardization=standardize and not self.standardized, learn=True
        )
        validation = self.inputs.pair(validation_data)  # standardized as the training inputs
        if seed is None and self.seed is None:  # a loaded network: draw one, to be recorded
            seed = secrets.randbelow(2**32)
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        state = TrainState.start(self.spec, self.params, cfg, rng, inputs=self.inputs.arrays(),
                                 about=self.inputs.info.meta(), scored=scored,
                                 seed=self.seed if seed is None else seed)  # fmt: skip
        return train_network(state, data, validation, resume, progress, on_epoch, comm)

    def save(self, path: str | Path) -> None:
        """Write the model (spec, parameters, standardizations, classes, inputs' names) to
        ``path`` atomically."""
        write_checkpoint(path, *self.file_parts())

    def file_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray[Any, Any]]]:
        """The model as a file holds it: its metadata and its named host arrays."""
        arrays = params_to_host(self.params) | self.inputs.arrays()
        return model_meta(self.spec, arrays) | self.inputs.info.meta(), arrays

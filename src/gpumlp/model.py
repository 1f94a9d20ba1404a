"""The user-facing :class:`Network`: configuration plus parameters, delegating all math.

``Network`` validates its arguments, holds ``xp``, the dtype and a :class:`~gpumlp.network.Params`
record, and calls the plain functions of :mod:`gpumlp.network`, :mod:`gpumlp.train` and
:mod:`gpumlp.runstate`. Arrays it returns belong to its backend (NumPy or CuPy arrays).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from . import __version__
from ._checks import (
    check_int,
    check_number,
    check_sizes,
    finite_host_array,
    prepare_targets,
    prepare_x,
)
from .activations import get_activation
from .backend import (
    Array,
    backend_name,
    get_namespace,
    is_out_of_memory,
    resolve_dtype,
    to_device,
    to_host,
)
from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .costs import get_cost
from .network import Params, backprop, feedforward, init_params
from .runstate import make_train_state
from .train import (
    MONITORS,
    DivergedError,
    History,
    TrainingInterrupted,
    evaluate_arrays,
    out_of_memory,
    predict_labels,
    run_epochs,
)

__all__ = ["Network", "load"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 10_000
"""Rows per forward pass when evaluating or predicting, bounding memory on large sets."""


class Network:
    """A fully connected network trained by backpropagation.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first: ``[784, 30, 10]``.
    activation : str
        Hidden-layer activation: "sigmoid", "relu", "tanh" or "identity".
    output_activation : str, optional
        Output activation (adds "softmax"); default: the same as ``activation``.
    cost : str
        "quadratic", "cross_entropy" (sigmoid or softmax outputs) or "log_likelihood"
        (sigmoid or softmax outputs; the book pairs it with softmax).
    init : str
        "normal" (N(0, 1), the book's network.py), "scaled" (N(0, 1/n_in) weights, network2.py)
        or "he" (N(0, 2/n_in) weights, zero biases; for ReLU).
    dtype : {"float32", "float64"}
    backend : "auto", "numpy", "cupy" or an array-API namespace module
    seed : int, optional
        Seeds the host RNG that draws the initial weights (and, unless ``fit`` gets its own
        seed, the epoch permutations). The same seed gives the same numbers on every backend.

    Attributes
    ----------
    weights : list of arrays, ``weights[l]`` shape (sizes[l+1], sizes[l])
    biases : list of arrays, ``biases[l]`` shape (sizes[l+1],)
    xp : the array namespace; dtype : its dtype object
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "sigmoid",
        output_activation: str | None = None,
        cost: str = "quadratic",
        init: str = "normal",
        dtype: str = "float32",
        backend: str | ModuleType = "auto",
        seed: int | None = None,
    ) -> None:
        self.sizes = check_sizes(sizes)
        hidden = get_activation(activation)
        if hidden.output_only:
            raise ValueError(f"activation={activation!r} is valid only as output_activation")
        out = (
            hidden
            if output_activation is None
            else get_activation(output_activation, argument="output_activation")
        )
        self.cost = get_cost(cost)
        self.cost.check_output(out)
        self.layer_activations = [hidden] * (len(self.sizes) - 2) + [out]
        if seed is not None:
            check_int("seed", seed, minimum=0)
        self.init = init
        self.seed = seed
        self.xp = get_namespace(backend)
        self.dtype = resolve_dtype(self.xp, dtype)
        self._rng = np.random.default_rng(seed)
        host = init_params(self.sizes, init, self._rng)
        self.params = Params.from_arrays([to_device(t, self.xp, self.dtype) for t in host.arrays()])

    # -- configuration ------------------------------------------------------------------------

    @property
    def activation(self) -> str:
        """Name of the hidden activation."""
        return self.layer_activations[0].name if len(self.sizes) > 2 else self.output_activation

    @property
    def output_activation(self) -> str:
        """Name of the output activation."""
        return self.layer_activations[-1].name

    @property
    def weights(self) -> list[Array]:
        """``weights[l]``, shape (sizes[l+1], sizes[l]), arrays of the backend."""
        return self.params.weights

    @property
    def biases(self) -> list[Array]:
        """``biases[l]``, shape (sizes[l+1],), arrays of the backend."""
        return self.params.biases

    @property
    def backend(self) -> str:
        """Short name of the backend ("numpy", "cupy", or the namespace's module name)."""
        return backend_name(self.xp)

    def __repr__(self) -> str:
        return (
            f"Network({self.sizes}, activation={self.activation!r}, output_activation="
            f"{self.output_activation!r}, cost={self.cost.name!r}, dtype={self._dtype_name!r}, "
            f"backend={self.backend!r})"
        )

    @property
    def _dtype_name(self) -> str:
        return "float64" if self.dtype == self.xp.float64 else "float32"

    def load_params(self, weights: Sequence[Any], biases: Sequence[Any]) -> None:
        """Copy parameters in from any array-likes (host or device).

        Parameters
        ----------
        weights : sequence of L array_like, ``weights[l]`` shape (sizes[l+1], sizes[l])
        biases : sequence of L array_like, ``biases[l]`` shape (sizes[l+1],) (or (n, 1), the
            book's column vectors)

        Raises
        ------
        ValueError
            On a wrong count or shape, or non-finite values (the message names the tensor).
        """
        n_layers = len(self.sizes) - 1
        weights, biases = list(weights), list(biases)
        if len(weights) != n_layers or len(biases) != n_layers:
            raise ValueError(
                f"expected {n_layers} weight and bias arrays for sizes {self.sizes}, "
                f"got {len(weights)} weights and {len(biases)} biases"
            )
        new = []
        for l, (w, b) in enumerate(zip(weights, biases, strict=True)):
            n_in, n_out = self.sizes[l], self.sizes[l + 1]
            w_h = finite_host_array(f"weights[{l}]", w)
            b_h = finite_host_array(f"biases[{l}]", b)
            if b_h.shape == (n_out, 1):
                b_h = b_h[:, 0]
            if w_h.shape != (n_out, n_in):
                raise ValueError(f"weights[{l}] must have shape {(n_out, n_in)}, got {w_h.shape}")
            if b_h.shape != (n_out,):
                raise ValueError(f"biases[{l}] must have shape {(n_out,)}, got {b_h.shape}")
            new += [w_h, b_h]
        for dst, src in zip(self.params.arrays(), new, strict=True):
            dst[...] = to_device(src, self.xp, self.dtype)

    # -- math, delegated ----------------------------------------------------------------------

    def feedforward(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> Array:
        """Outputs for inputs ``X`` (m, sizes[0]) -> array (m, sizes[-1]), in chunks of rows."""
        X = self._x(X)
        chunk = check_int("chunk", chunk)
        n = X.shape[0]
        outs = [
            feedforward(
                self.params,
                X[k : min(k + chunk, n), ...],
                activations=self.layer_activations,
                xp=self.xp,
            )
            for k in range(0, n, chunk)
        ]
        return outs[0] if len(outs) == 1 else self.xp.concat(outs, axis=0)

    def predict(self, X: Any, *, chunk: int = DEFAULT_CHUNK) -> Array:
        """Class index of each row of ``X`` (m, sizes[0]) -> int64 array (m,)."""
        return predict_labels(self.feedforward(X, chunk=chunk), xp=self.xp)

    def gradients(self, X: Any, y: Any) -> tuple[list[Array], list[Array]]:
        """Gradient of the batch-mean cost at ``X`` (m, sizes[0]) and labels or targets ``y``.

        Returns ``(grads_w, grads_b)`` shaped like ``weights`` and ``biases``, computed for the
        whole batch at once.
        """
        X = self._x(X)
        Y, _ = self._targets(y, X.shape[0])
        grads, _ = backprop(
            self.params, X, Y, activations=self.layer_activations, cost=self.cost, xp=self.xp
        )
        return grads.weights, grads.biases

    def evaluate(self, X: Any, y: Any, *, chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
        """Mean cost and accuracy on ``X`` (m, sizes[0]), ``y`` labels (m,) or targets (m, n_out).

        Returns ``{"cost": float, "accuracy": float, "n": int}``; accuracy is the fraction of
        rows whose predicted class (argmax) equals the label.
        """
        X = self._x(X)
        Y, labels = self._targets(y, X.shape[0])
        cost, acc = evaluate_arrays(self, X, Y, labels, chunk=check_int("chunk", chunk))
        return {"cost": cost, "accuracy": acc, "n": int(X.shape[0])}

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None,
        seed: int | None = None,
        optimizer: str = "sgd",
        momentum: float = 0.9,
        l2: float = 0.0,
        l1: float = 0.0,
        dropout: float = 0.0,
        schedule: str = "constant",
        patience: int | None = None,
        monitor: Iterable[str] = ("train_cost", "val_cost", "val_accuracy"),
        checkpoint: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: str | Path | None = None,
        engine: str = "auto",
        progress: Callable[..., Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
    ) -> History:
        """Train by mini-batch gradient descent on ``X`` (n, sizes[0]) and ``y``.

        Parameters
        ----------
        X : array_like, shape (n, sizes[0])
        y : array_like, labels (n,) or targets (n, sizes[-1])
        epochs : int, total epochs (a resumed run continues up to this number)
        batch_size : int >= 1 (larger than n means one batch); the last batch may be shorter
        lr : float > 0, the learning rate η; each step is ``w -= lr * ∂C/∂w`` for the batch-mean C
        shuffle : bool, draw a new permutation each epoch (else consecutive slices in order)
        validation_data : (X_val, y_val), evaluated after each epoch
        seed : int, seeds the epoch permutations (default: the network's RNG)
        optimizer : "sgd", "momentum", "nesterov" or "adam"; momentum : μ for the momentum ones
        l2, l1 : float >= 0, weight penalties λ of the book's form (λ/n)·W and (λ/n)·sgn(W)
        dropout : float in [0, 1), inverted dropout on the hidden layers during training
        schedule : "constant", "step", "plateau" (the book's halve-on-plateau) or "cosine"
        patience : int, early stopping on validation accuracy (for "plateau": epochs per halving)
        monitor : names from ``MONITORS``
        checkpoint : path of a checkpoint written every ``checkpoint_every`` epochs, on Ctrl-C
            and at the end; resume : path of a checkpoint to continue from
        engine : "auto", "generic", "fused" or "graph"; the last two are CuPy fast paths
            (see :data:`gpumlp.train.ENGINES`), "generic" forces the plain ``xp`` code
        progress : factory ``progress(total=, desc=)`` of a per-batch bar (e.g. ``tqdm``)
        on_epoch : called with each epoch's record

        Returns
        -------
        History, one record per epoch run.

        Raises
        ------
        DivergedError
            When the cost becomes NaN or inf; the network keeps the last finite weights
            (and they are checkpointed, if asked).
        TrainingInterrupted
            A KeyboardInterrupt carrying ``history``, raised on Ctrl-C after the last finished
            epoch is restored (and checkpointed, if asked).
        gpumlp.train.OutOfMemory
            A MemoryError when a batch does not fit (GPU or host); the message gives the sizes,
            dtype, batch size and the largest batch that fits. The last finished epoch is kept.
        """
        epochs = check_int("epochs", epochs)
        batch_size = check_int("batch_size", batch_size)
        lr = check_number("lr", lr, positive=True)
        l2 = check_number("l2", l2, nonnegative=True)
        l1 = check_number("l1", l1, nonnegative=True)
        dropout = check_number("dropout", dropout, nonnegative=True, below=1.0)
        momentum = check_number("momentum", momentum, nonnegative=True, below=1.0)
        patience = check_int("patience", patience, allow_none=True)
        checkpoint_every = check_int("checkpoint_every", checkpoint_every, allow_none=True)
        if seed is not None:
            check_int("seed", seed, minimum=0)
        monitor = tuple(monitor)
        for name in monitor:
            if name not in MONITORS:
                raise ValueError(
                    f"monitor entry {name!r} is not a monitor; expected some of {list(MONITORS)}"
                )
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        X_d = self._x(X)
        data = (X_d, *self._targets(y, X_d.shape[0]))
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            Xv = self._x(validation_data[0], name="validation_data[0]")
            validation = (
                Xv,
                *self._targets(validation_data[1], Xv.shape[0], name="validation_data[1]"),
            )
        hyper = {
            "lr": lr,
            "batch_size": batch_size,
            "optimizer": optimizer,
            "momentum": momentum,
            "l2": l2,
            "l1": l1,
            "dropout": dropout,
            "schedule": schedule,
            "shuffle": shuffle,
        }
        run = make_train_state(
            self,
            lr=lr,
            epochs=epochs,
            optimizer=optimizer,
            momentum=momentum,
            schedule=schedule,
            patience=patience,
            seed=seed,
            hyper=hyper,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
        )
        if run.schedule.kind == "plateau" or run.early is not None:
            if validation is None or "val_accuracy" not in monitor:
                raise ValueError(
                    f"schedule={schedule!r}/patience watch validation accuracy: they need "
                    f"validation_data and 'val_accuracy' in monitor (monitor={list(monitor)})"
                )
        if resume is not None:
            run.load(resume)
        if checkpoint is not None:
            _check_writable(Path(checkpoint))
        try:
            return run_epochs(
                self,
                data,
                validation,
                run=run,
                epochs=epochs,
                batch_size=batch_size,
                shuffle=shuffle,
                monitor=monitor,
                l2=l2,
                l1=l1,
                dropout=dropout,
                engine=engine,
                chunk=DEFAULT_CHUNK,
                progress=progress,
                on_epoch=on_epoch,
            )
        except KeyboardInterrupt as exc:
            run.restore()
            run.history.stop_reason = f"interrupted during epoch {run.epoch}"
            if checkpoint is not None:
                run.save(checkpoint)
            raise TrainingInterrupted(run.history) from exc
        except DivergedError:
            if checkpoint is not None:  # the last finite epoch, to resume with a smaller lr
                run.save(checkpoint)
            raise
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            run.restore()  # the weights of the last finished epoch, as for Ctrl-C
            n = X_d.shape[0]
            raise out_of_memory(self, exc, batch_size=batch_size, n=n, dropout=dropout) from exc

    # -- persistence --------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model (config + parameters) to ``path`` (``.npz``) atomically."""
        write_checkpoint(path, self._meta(), self._host_arrays())

    def _meta(self) -> dict[str, Any]:
        return {
            "library": __version__,
            "sizes": self.sizes,
            "activation": self.activation,
            "output_activation": self.output_activation,
            "cost": self.cost.name,
            "init": self.init,
            "dtype": self._dtype_name,
        }

    def _host_arrays(self) -> dict[str, np.ndarray]:
        return {f"param/{i}": to_host(t) for i, t in enumerate(self.params.arrays())}

    def _load_checkpoint_params(
        self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Any
    ) -> None:
        mine = self._meta()
        for key in ("sizes", "activation", "output_activation", "cost"):
            if meta.get(key) != mine[key]:
                raise CheckpointError(
                    f"{str(path)!r} is for a network with {key}={meta.get(key)!r}, "
                    f"but this network has {key}={mine[key]!r}"
                )
        n = len(self.params.arrays())
        try:
            tensors = [arrays[f"param/{i}"] for i in range(n)]
        except KeyError as exc:
            raise CheckpointError(f"{str(path)!r} lacks parameter {exc}") from None
        try:
            self.load_params(tensors[0::2], tensors[1::2])
        except (TypeError, ValueError) as exc:  # wrong shape, non-numeric, NaN: name the file
            raise CheckpointError(f"{str(path)!r} holds invalid parameters: {exc}") from None

    # -- input handling -----------------------------------------------------------------------

    def _x(self, X: Any, *, name: str = "X") -> Array:
        return prepare_x(X, n_features=self.sizes[0], xp=self.xp, dtype=self.dtype, name=name)

    def _targets(self, y: Any, m: int, *, name: str = "y") -> tuple[Array, Array]:
        return prepare_targets(
            y,
            m=m,
            n_out=self.sizes[-1],
            xp=self.xp,
            dtype=self.dtype,
            unit=self.cost.unit_targets,
            name=name,
        )


def load(
    path: str | Path, *, backend: str | ModuleType = "auto", dtype: str | None = None
) -> Network:
    """Load a model or training checkpoint written by gpumlp, on any backend.

    Parameters
    ----------
    path : path of a ``.npz`` written by :meth:`Network.save` or a training checkpoint
    backend : where to put the parameters ("auto", "numpy", "cupy" or a namespace module)
    dtype : override the stored dtype ("float32" or "float64")

    Returns
    -------
    Network with the stored configuration and parameters.

    Raises
    ------
    FileNotFoundError, CheckpointError (a ValueError) naming the file.
    """
    meta, arrays = read_checkpoint(path)
    try:
        net = Network(
            meta["sizes"],
            activation=meta["activation"] if len(meta["sizes"]) > 2 else "sigmoid",
            output_activation=meta["output_activation"],
            cost=meta["cost"],
            init=meta.get("init", "normal"),
            dtype=dtype or meta["dtype"],
            backend=backend,
        )
    except KeyError as exc:
        raise CheckpointError(f"{str(path)!r} lacks model metadata {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{str(path)!r} holds an invalid model configuration: {exc}"
        ) from None
    net._load_checkpoint_params(meta, arrays, path)
    return net


def _check_writable(path: Path) -> None:
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} is a directory, expected a file path")
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"checkpoint folder {str(folder)!r} is not writable")

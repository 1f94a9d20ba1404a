"""The epoch loop: mini-batch training on the device, monitoring, schedules, checkpoints.

Nothing here prints. Per-batch progress goes to an optional ``progress`` factory (the CLI
passes tqdm), per-epoch results to ``on_epoch`` and the logger. The batch loop never reads a
value back to the host: costs and correct counts accumulate on the device and are read once
per epoch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import backend
from .backend import Array
from .history import DivergedError, History, OutOfMemory, TrainingInterrupted, out_of_memory
from .network import backprop, feedforward
from .optim import regularize

if TYPE_CHECKING:
    from .model import Network

__all__ = [
    "ENGINES",
    "MONITORS",
    "DivergedError",
    "History",
    "OutOfMemory",
    "TrainingInterrupted",
    "evaluate_arrays",
    "generic_step",
    "out_of_memory",
    "predict_labels",
    "run_epochs",
    "select_step",
]

ENGINES = ("auto", "generic", "fused", "graph")
"""``generic``: the plain ``xp`` code (any backend, the reference). ``fused``: the backend's fast
path (NumPy: in-place ufuncs into preallocated buffers; CuPy: fused elementwise kernels).
``graph``: CuPy only, whole steps replayed as a CUDA graph. ``auto`` picks the fastest that
qualifies for the backend and network, falling back to ``generic``."""

logger = logging.getLogger(__name__)

MONITORS = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")
"""``train_*`` are running means over the epoch's mini-batches; ``val_*`` are measured on
``validation_data`` after the epoch (the book's evaluation monitors)."""


def predict_labels(a: Array, *, xp: Any) -> Array:
    """Class of each row of outputs ``a`` (m, n_out): argmax, or ``a > 0.5`` for one unit."""
    if a.shape[1] == 1:
        return xp.astype(a[:, 0] > 0.5, xp.int64)
    return xp.argmax(a, axis=1)


def evaluate_arrays(
    net: Network, X: Array, Y: Array, labels: Array, *, chunk: int
) -> tuple[float, float]:
    """Mean cost and accuracy of ``net`` on device arrays, in chunks of ``chunk`` rows.

    X (n, n_0), Y (n, n_L), labels (n,) int64. Returns ``(cost, accuracy)`` as floats, read
    back with one host sync.
    """
    xp = net.xp
    n = X.shape[0]
    cost_sum = xp.zeros((), dtype=net.dtype)
    correct = xp.zeros((), dtype=xp.int64)
    for k in range(0, n, chunk):
        rows = slice(k, min(k + chunk, n))  # clamped: the array API leaves out-of-range stops open
        a = feedforward(net.params, X[rows, ...], activations=net.layer_activations, xp=xp)
        cost_sum = cost_sum + xp.sum(net.cost.fn(a, Y[rows, ...], xp=xp))
        correct = correct + xp.sum(xp.astype(predict_labels(a, xp=xp) == labels[rows], xp.int64))
    return float(cost_sum) / n, int(correct) / n


def generic_step(net: Network, run: Any, *, l2: float, l1: float, n: int) -> Callable[..., Array]:
    """The reference training step, written once in ``xp``.

    Returns ``step(x, y, keep, lr) -> a``: backprop on the batch x (m, n_0), y (m, n_L) with
    dropout multipliers ``keep`` (or None), the penalty gradients, one optimizer update in
    place; ``a`` (m, n_L) is the batch's output, for the monitors.
    """
    xp, params, cost, acts = net.xp, net.params, net.cost, net.layer_activations

    def step(x: Array, y: Array, keep: Any, lr: float) -> Array:
        grads, a = backprop(params, x, y, activations=acts, cost=cost, xp=xp, keep=keep)
        if l2 or l1:
            regularize(grads, params, l2=l2, l1=l1, n=n, xp=xp)
        run.optimizer.update(params, grads, run.opt_state, lr=lr, xp=xp)
        return a

    return step


def select_step(
    net: Network,
    run: Any,
    *,
    engine: str,
    l2: float,
    l1: float,
    n: int,
    batch_size: int,
    dropout: float,
) -> Callable[..., Array]:
    """Choose the training step: the one place where a backend fast path is picked.

    ``engine`` is one of :data:`ENGINES`. A fast path is used only on its backend and only for
    configurations it supports (it says which); asking for one that does not qualify raises
    ValueError, while ``auto`` falls back to :func:`generic_step`.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not an engine; expected one of {list(ENGINES)}")
    name = backend.backend_name(net.xp)
    if engine == "graph" and name != "cupy":
        raise ValueError(f"engine='graph' needs the CuPy backend, not {name}")
    if engine != "generic" and name in ("numpy", "cupy"):
        if name == "cupy":
            from ._cupy_fast import make_step
        else:
            from ._numpy_fast import make_step
        step, why_not = make_step(
            net, run, engine=engine, l2=l2, l1=l1, n=n, batch_size=batch_size, dropout=dropout
        )
        if step is not None:
            return step
        if engine != "auto":
            raise ValueError(f"engine={engine!r} does not apply here: {why_not}")
        logger.info("engine auto: generic step (%s)", why_not)
    elif engine == "fused":
        raise ValueError(f"engine='fused' needs the NumPy or CuPy backend, not {name}")
    return generic_step(net, run, l2=l2, l1=l1, n=n)


def run_epochs(
    net: Network,
    data: tuple[Array, Array, Array],
    validation: tuple[Array, Array, Array] | None,
    *,
    run: Any,
    epochs: int,
    batch_size: int,
    shuffle: bool,
    monitor: tuple[str, ...],
    l2: float,
    l1: float,
    dropout: float,
    engine: str,
    chunk: int,
    progress: Callable[..., Any] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> History:
    """Train ``net`` in place from ``run.epoch`` up to ``epochs``; see :meth:`Network.fit`.

    ``data`` and ``validation`` are device triples ``(X, Y, labels)``. ``run`` is the
    :class:`~gpumlp.runstate.TrainState` (optimizer, its state, schedule, early stopping, host RNG,
    history, checkpointing), advanced here epoch by epoch.
    """
    xp, params, cost = net.xp, net.params, net.cost
    X, Y, labels = data
    n = X.shape[0]
    n_batches = -(-n // batch_size)
    history = run.history
    step = select_step(
        net, run, engine=engine, l2=l2, l1=l1, n=n, batch_size=batch_size, dropout=dropout
    )
    # A fast path may bring a cheaper batch cost for the monitor; the default is the cost's own.
    batch_cost = getattr(step, "cost_sum", None) or (lambda a, y: xp.sum(cost.fn(a, y, xp=xp)))
    want_cost, want_accuracy = "train_cost" in monitor, "train_accuracy" in monitor
    keep_scale = 1.0 / (1.0 - dropout)  # inverted dropout: kept units are scaled by 1/(1 - p)
    while run.epoch < epochs:
        epoch = run.epoch
        start = time.perf_counter()
        lr = run.schedule.lr_for(epoch)
        run.snapshot()  # the last finished epoch: restored on divergence or interruption
        # The epoch's order: a host-drawn permutation, moved once; each mini-batch is then
        # gathered by index on the device (cheaper than a shuffled copy of the whole set, and no
        # second copy of the data in memory).
        perm = backend.to_device(run.rng.permutation(n), xp) if shuffle else None
        draw = backend.device_uniform(xp, int(run.rng.integers(2**63))) if dropout else None
        cost_sum = xp.zeros((), dtype=net.dtype)
        correct = xp.zeros((), dtype=xp.int64)
        bar = progress(total=n_batches, desc=f"epoch {epoch}") if progress else None
        try:
            for k in range(0, n, batch_size):
                rows = slice(k, min(k + batch_size, n))
                if perm is None:
                    x, y, lab = X[rows, ...], Y[rows, ...], labels[rows]
                else:
                    idx = perm[rows]
                    x, y = xp.take(X, idx, axis=0), xp.take(Y, idx, axis=0)
                    lab = xp.take(labels, idx, axis=0) if want_accuracy else None
                keep = None
                if draw is not None:
                    keep = [
                        xp.astype(draw((x.shape[0], h), net.dtype) >= dropout, net.dtype)
                        * keep_scale
                        for h in net.sizes[1:-1]
                    ]
                a = step(x, y, keep, lr)
                if want_cost:
                    cost_sum = cost_sum + batch_cost(a, y)
                if want_accuracy:
                    hit = predict_labels(a, xp=xp) == lab
                    correct = correct + xp.sum(xp.astype(hit, xp.int64))
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        # One host sync per epoch: finiteness of the weights and the monitors are read here.
        finite = bool(xp.all(xp.isfinite(xp.stack([xp.sum(t) for t in params.arrays()]))))
        train_cost = float(cost_sum) / n if want_cost else None
        if not finite or (train_cost is not None and not math.isfinite(train_cost)):
            run.restore()
            history.stop_reason = f"diverged in epoch {epoch} (lr={lr:g})"
            raise DivergedError(epoch, lr, history)
        record: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_cost": train_cost}
        record["train_accuracy"] = int(correct) / n if want_accuracy else None
        if validation is not None and ("val_cost" in monitor or "val_accuracy" in monitor):
            val_cost, val_acc = evaluate_arrays(net, *validation, chunk=chunk)
            if not math.isfinite(val_cost):
                logger.warning("epoch %d: validation cost is not finite", epoch)
            record["val_cost"] = val_cost if "val_cost" in monitor else None
            record["val_accuracy"] = val_acc if "val_accuracy" in monitor else None
        else:
            record["val_cost"] = record["val_accuracy"] = None
        record["seconds"] = time.perf_counter() - start
        history.records.append(record)
        run.epoch += 1
        stop = run.after_epoch(record)
        logger.info("epoch %d: %s", epoch, {k: v for k, v in record.items() if v is not None})
        if on_epoch is not None:
            on_epoch(record)
        if stop:
            history.stop_reason = stop
            break
    run.finish()
    return history

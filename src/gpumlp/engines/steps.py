"""Training steps: what every engine offers, and the generic step written once in ``xp``.

A step object (any engine) offers two calls:

- ``step(x, y, lr, draw=0) -> a``: one step on an explicit batch ``x`` (m, n_0), ``y`` (m, n_L):
  backprop, penalties and one optimizer update of the run's parameters in place; ``a`` is the
  batch's output (m, n_L). ``draw`` numbers the step for the dropout masks
  (:mod:`gpumlp.dropout`). Tests and the parity check drive steps this way. The per-step
  engines also take ``part=(first, rows)``: ``x`` is rows ``[first, first + m)`` of a global
  batch of ``rows`` rows, shared by the ranks of a communicator (:mod:`gpumlp.distributed`):
  the gradients are then this rank's sums over its rows ÷ ``rows``, summed over the ranks
  before the penalties and the update, and the dropout masks are those rows of the global
  batch's masks.
- ``step.epoch(perm, lr, draw, monitor=..., progress=None) -> (cost_sum, correct)``: every
  mini-batch of the bound data set in the order ``perm`` (device int64 indices, or None for
  consecutive slices), the k-th batch drawing masks ``draw + k``. Returns device scalars: the
  summed cost and the number of correct predictions over the epoch. No engine reads anything
  back to the host inside an epoch.

On NumPy, X may be a file read as it is used (:class:`~gpumlp.files.npyview.NpyRows`, what
``--data X.npy`` gives with ``--from-disk``, or when it does not fit in memory): the loop then
checks its size before each epoch and reads each batch from it (a file cut short raises
:class:`~gpumlp.errors.DataFileShrank`). The other engines get such a file only as a copy,
made by :mod:`gpumlp.inputs`.

:func:`gpumlp.engines.select_step` picks the engine: ``generic`` (:class:`GenericStep`, any
namespace, the reference every fast path is tested against), or the backend's fast path
(NumPy: :mod:`gpumlp.engines._numpy_fast`; CuPy: :mod:`gpumlp.engines._cupy_fast`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..backend import Array, Namespace, index_dtype
from ..distributed.comm import local_rows
from ..distributed.sync import Reducer
from ..dropout import keep_masks
from ..files.npyview import BatchReader, NpyRows
from ..network import Params, backprop
from ..optim import apply_update, regularize
from ..runstate import TrainState

__all__ = ["BatchLoop", "Data", "GenericStep", "Step", "hits", "predict_labels"]

Data = tuple[Array, Array, Array]
"""A device data set: X (n, n_0), Y (n, n_L) and labels (n,) int64."""


class Step(Protocol):
    """What every engine offers (see the module docstring)."""

    engine: str
    label: str  # what the step is, for reports: its engine, with its backend where two share it

    def __call__(self, x: Array, y: Array, lr: float, draw: int = 0) -> Array: ...

    def epoch(
        self,
        perm: Array | None,
        lr: float,
        draw: int,
        *,
        monitor: tuple[str, ...] = (),
        progress: Callable[[int], object] | None = None,
    ) -> tuple[Array, Array]: ...


def predict_labels(a: Array, *, xp: Namespace) -> Array:
    """Class of each row of outputs ``a`` (m, n_out): argmax, or ``a > 0.5`` for one unit."""
    if a.shape[1] == 1:
        return xp.astype(a[:, 0] > 0.5, index_dtype(xp))
    return xp.argmax(a, axis=1)


def hits(a: Array, labels: Array, *, xp: Namespace) -> Array:
    """How many rows of outputs ``a`` (m, n_out) predict their ``labels`` (m,): a device
    scalar of the index dtype (read back once per epoch, not per batch)."""
    return xp.sum(xp.astype(predict_labels(a, xp=xp) == labels, index_dtype(xp)))


class BatchLoop:
    """An epoch as a Python loop over mini-batches, each gathered by index on the device."""

    engine = label = "generic"

    def __init__(self, state: TrainState, data: Data) -> None:
        self.state, self.data = state, data
        self.xp = state.spec.xp
        X = data[0]
        self.reader = BatchReader(X) if isinstance(X, NpyRows) else None

        comm = state.comm
        self.reducer = None if comm is None else Reducer(comm, state.params, xp=self.xp)

    def __call__(
        self, x: Array, y: Array, lr: float, draw: int = 0, *, part: tuple[int, int] | None = None
    ) -> Array:
        raise NotImplementedError

    def keep_masks(self, m: int, draw: int, first: int = 0) -> list[Array] | None:
        """Step ``draw``'s dropout multipliers for ``m`` rows of the batch from row ``first``,
        one (m, n_l) array per hidden layer (:func:`gpumlp.dropout.keep_masks`), or None when
        nothing is dropped."""
        s = self.state
        if not s.config.dropout or len(s.spec.sizes) <= 2:
            return None
        assert s.dropout_key is not None
        widths, p, dtype = s.spec.hidden_widths, s.config.dropout, s.spec.xp_dtype
        return keep_masks(s.dropout_key, draw, m, widths, p, xp=self.xp, dtype=dtype, first=first)

    def summed(self, grads: Params, part: tuple[int, int] | None) -> Params:
        """``grads`` summed over the ranks when the step had a ``part`` of a global batch."""
        return grads if part is None or self.reducer is None else self.reducer.sum(grads)

    def epoch(
        self,
        perm: Array | None,
        lr: float,
        draw: int,
        *,
        monitor: tuple[str, ...] = (),
        progress: Callable[[int], object] | None = None,
    ) -> tuple[Array, Array]:
        """One pass over the bound data (see the module docstring)."""
        xp, n, bs = self.xp, self.data[0].shape[0], self.state.config.batch_size
        want_cost, want_accuracy = "train_cost" in monitor, "train_accuracy" in monitor
        cost_sum = xp.zeros((), dtype=self.state.spec.xp_dtype)
        correct = xp.zeros((), dtype=index_dtype(xp))
        if self.reader is not None:
            self.reader.rows.check()  # a file that shrank since the last epoch stops training here
        ranks = self.state.comm
        for b, k in enumerate(range(0, n, bs)):
            rows = slice(k, min(k + bs, n))  # clamped: the array API leaves ranges past n open
            part = None
            if ranks is not None:  # this rank's consecutive part of the global batch
                lo, hi = local_rows(rows.stop - k, ranks.rank, ranks.size)
                part, rows = (lo, rows.stop - k), slice(k + lo, k + hi)
            x, y, lab = self.batch(rows, perm, labels=want_accuracy)
            a = self(x, y, lr, draw + b) if part is None else self(x, y, lr, draw + b, part=part)
            if want_cost:
                cost_sum = self.add_cost(cost_sum, a, y)
            if want_accuracy:
                correct = self.add_hits(correct, a, lab)
            if progress is not None:
                progress(1)
        if self.reducer is not None:
            return self.reducer.epoch_sums(cost_sum, correct)
        return cost_sum, correct

    def batch(self, rows: slice, perm: Array | None, *, labels: bool) -> tuple[Array, Array, Array]:
        """The mini-batch at positions ``rows`` of the order ``perm``: x (m, n_0), y (m, n_L) and
        its labels (m,) (with ``labels=False``, whatever is at hand: they are not read)."""
        xp, (X, Y, lab), read = self.xp, self.data, self.reader
        if perm is None:
            x = X[rows, ...] if read is None else read(rows)
            return x, Y[rows, ...], lab[rows]
        idx = perm[rows]
        x = xp.take(X, idx, axis=0) if read is None else read(idx)
        return x, xp.take(Y, idx, axis=0), xp.take(lab, idx, axis=0) if labels else lab

    def add_cost(self, cost_sum: Array, a: Array, y: Array) -> Array:
        """``cost_sum`` (a device scalar) plus the batch's summed cost, of outputs ``a`` and
        targets ``y`` (m, n_L); engines may add in place and return ``cost_sum`` itself."""
        xp = self.xp
        return cost_sum + xp.sum(self.state.spec.cost.fn(a, y, xp=xp))

    def add_hits(self, correct: Array, a: Array, labels: Array) -> Array:
        """``correct`` (a device scalar) plus the batch's correct predictions (:func:`hits`);
        engines may add in place and return ``correct`` itself."""
        return correct + hits(a, labels, xp=self.xp)


class GenericStep(BatchLoop):
    """The reference step, written once in ``xp``: works on every namespace."""

    def __call__(
        self, x: Array, y: Array, lr: float, draw: int = 0, *, part: tuple[int, int] | None = None
    ) -> Array:
        s = self.state
        spec, cfg, xp = s.spec, s.config, self.xp
        first, rows = part or (0, x.shape[0])
        keep = self.keep_masks(x.shape[0], draw, first)
        grads, a = backprop(
            s.params, x, y, activations=spec.activations, cost=spec.cost, xp=xp, keep=keep,
            rows=rows,
        )  # fmt: skip
        grads = self.summed(grads, part)
        if cfg.l2 or cfg.l1:
            grads = regularize(
                grads, s.params, l2=cfg.l2, l1=cfg.l1, n=self.data[0].shape[0], xp=xp
            )
        apply_update(s.optimizer, s.params, grads, s.opt_state, lr=lr, xp=xp)
        return a

"""What training does with a communicator (:mod:`gpumlp.distributed`): the gradient sum of
each step, the epoch's sums, the agreement check at the start, and interrupts that stop every
rank at the same step.

Interrupts. A signal reaches the ranks at different moments (``mpiexec`` forwards Ctrl-C and
SIGTERM to each); a rank that stopped alone would leave the others waiting in an allreduce.
So within :func:`steps_hold_signals` a signal is only noted, and the next gradient sum carries
a flag in its last element: every rank sees it after the same step and raises
:class:`~gpumlp.signals.Interrupt` there, and the run stops as one process does (the last
finished epoch kept and checkpointed by rank 0). A second signal ends the rank at once, and
MPI's process manager then ends the job.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import numpy as np

from .. import signals
from ..backend import Array, Namespace, to_host
from ..network import Params
from ..runstate import TrainState
from .comm import Comm

__all__ = ["Reducer", "check_same_state", "steps_hold_signals"]

_pending: list[int] = []


def _note(signum: int, frame: FrameType | None) -> None:
    _pending.append(signum)
    if len(_pending) >= 2:
        os._exit(signals.exit_code(signum))


@contextlib.contextmanager
def steps_hold_signals() -> Iterator[None]:
    """Within the block SIGINT, SIGTERM and SIGHUP are noted, to stop every rank after the
    same step (module docstring); the handlers before are restored after."""
    _pending.clear()
    with signals.handled_by(_note):
        yield
    _pending.clear()


class Reducer:
    """The gradient sum of a step over the ranks: one allreduce of one contiguous buffer
    holding every weight's and bias's gradient (in :meth:`Params.arrays` order) and the
    interrupt flag (last element).

    Parameters
    ----------
    comm : the communicator
    params : Params, the run's parameters (their shapes and dtype)
    xp : their namespace (NumPy or CuPy: the buffer is written through slices)

    The buffer is made at the first use of :attr:`flat`, :attr:`grads` or :meth:`sum`: an
    engine with a flat buffer of its own (the CuPy core) calls :meth:`reduce` on that and
    needs none here.
    """

    def __init__(self, comm: Comm, params: Params, *, xp: Namespace) -> None:
        self.comm, self.xp = comm, xp
        arrays = params.arrays()
        self._shapes, self._dtype = [t.shape for t in arrays], arrays[0].dtype
        self._sizes = [int(np.prod(shape)) for shape in self._shapes]

    @functools.cached_property
    def flat(self) -> Array:
        """The buffer summed each step (made at first use): every gradient, then the flag."""
        return self.xp.zeros(sum(self._sizes) + 1, dtype=self._dtype)

    @functools.cached_property
    def grads(self) -> Params:
        """Views into :attr:`flat`: a step may write its gradients here."""
        views, at = [], 0
        for shape, size in zip(self._shapes, self._sizes, strict=True):
            views.append(self.xp.reshape(self.flat[at : at + size], shape))
            at += size
        return Params.from_arrays(views)

    def sum(self, grads: Params) -> Params:
        """``grads`` (this rank's sums over its rows ÷ the global batch size) summed over the
        ranks, as :attr:`grads`; raises :class:`~gpumlp.signals.Interrupt` on every rank after
        the step in which any rank was signalled."""
        for view, g in zip(self.grads.arrays(), grads.arrays(), strict=True):
            if view is not g:
                view[...] = g
        self.reduce(self.flat)
        return self.grads

    def reduce(self, flat: Array) -> None:
        """Sum ``flat`` (1-D, contiguous: gradients in any layout, then the interrupt flag's
        element) over the ranks, in place; raise :class:`~gpumlp.signals.Interrupt` on every
        rank after the step in which any rank was signalled."""
        flat[-1] = 1.0 if _pending else 0.0
        self.comm.allreduce(flat)
        if float(flat[-1]) > 0.0:
            raise signals.Interrupt(_pending[0] if _pending else int(signal.SIGTERM))

    def epoch_sums(self, cost_sum: Array, correct: Array) -> tuple[Array, Array]:
        """The epoch's summed cost and correct count over every rank's rows (device scalars
        of the same dtypes)."""
        xp = self.xp
        both = np.array([float(to_host(cost_sum)), float(to_host(correct))], dtype=np.float64)
        self.comm.allreduce(both)
        return (
            xp.asarray(both[0], dtype=cost_sum.dtype),
            xp.asarray(round(both[1]), dtype=correct.dtype),
        )


def _digest(state: TrainState) -> str:
    """A SHA-256 of everything a step reads: parameters, optimizer buffers and step counts,
    the RNG (the epochs' orders), the dropout key and the epoch."""
    h = hashlib.sha256()
    tensors = list(state.params.arrays())
    for buf in state.opt_state.buffers.values():
        tensors += buf.arrays()
    for t in tensors:
        host = np.ascontiguousarray(to_host(t))
        h.update(f"{host.dtype.str}{host.shape}".encode())
        h.update(host.tobytes())
    rest: Any = (state.opt_state.scalars, state.rng.bit_generator.state, state.dropout_key,
                 state.epoch)  # fmt: skip
    h.update(repr(rest).encode())
    return h.hexdigest()


def check_same_state(state: TrainState, comm: Comm) -> None:
    """Check that every rank starts from rank 0's state (:func:`_digest`): ValueError on every
    rank, naming those that differ, when one does not (another ``--seed`` or checkpoint)."""
    mine = _digest(state)
    theirs = comm.bcast(mine)
    differ = np.zeros(comm.size, dtype=np.float64)
    differ[comm.rank] = float(mine != theirs)
    comm.allreduce(differ)
    if differ.any():
        ranks = ", ".join(str(r) for r in np.flatnonzero(differ))
        raise ValueError(
            f"--distributed: rank(s) {ranks} start from other parameters or training state "
            "than rank 0 (checksums differ): every rank must use the same --seed, data and "
            "checkpoint"
        )

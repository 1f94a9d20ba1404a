"""One network trained by several processes: data-parallel training on MPI.

``mpiexec -n P gpumlp train --distributed`` (or ``Network.fit(..., comm=world())``) runs the
same training on P processes, the *ranks*. Every rank holds the whole data set and draws the
same shuffled order from the shared seed; each global mini-batch of ``batch_size`` rows is cut
into P consecutive parts (:func:`local_rows`), rank ``r`` taking the ``r``-th. A rank's
gradients are the sums over its rows divided by the *global* batch size; one allreduce of one
packed buffer (every weight and bias) adds them up, so every rank then holds the gradient of
the global batch's mean cost, and takes the same optimizer step. For P = 2 that is bit for bit
one process summing the two halves' gradients in rank order.

:mod:`.comm` is the communicator (:func:`world`, MPI through ``mpi4py``, or one process alone);
:mod:`.nccl` the same over NCCL for CuPy arrays, and :func:`select_device` (one GPU per rank);
:mod:`.sync` what training does with it. The network's math and the optimizers never see any
of it: they receive ``xp`` as always.
"""

from __future__ import annotations

from .comm import Comm, LocalComm, MpiComm, abort_job, local_rows, world
from .nccl import select_device

__all__ = ["Comm", "LocalComm", "MpiComm", "abort_job", "local_rows", "select_device", "world"]

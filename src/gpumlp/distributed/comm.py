"""Communicators: MPI through ``mpi4py`` (:class:`MpiComm`), or one process alone
(:class:`LocalComm`), behind one small interface (:class:`Comm`).

``mpi4py`` is imported only by :func:`world` (``pip install 'gpumlp[mpi]'`` brings it with
MPICH's wheels, whose ``mpiexec`` starts the ranks). Buffers passed to :meth:`Comm.allreduce`
are one-dimensional and contiguous, NumPy or CuPy: a CuPy buffer goes through host memory
(*host staging*: one copy out and one back per call), which every MPI build can do;
:mod:`gpumlp.distributed.nccl` sums CuPy buffers on the devices instead.
"""

from __future__ import annotations

import os
from typing import Any

from ..arraytypes import Array, Comm

__all__ = ["Comm", "LocalComm", "MpiComm", "abort_job", "local_rows", "rank_of", "world"]

_world: Comm | None = None


class LocalComm:
    """One process alone: every collective is the identity."""

    rank, size, name = 0, 1, "local"

    def allreduce(self, buf: Array) -> None:
        """Nothing to add: ``buf`` is already the sum."""

    def bcast(self, obj: Any) -> Any:
        """``obj`` itself."""
        return obj

    def abort(self, code: int) -> None:
        """Exit this process at once with ``code``."""
        os._exit(code)


class MpiComm:
    """An ``mpi4py`` communicator (``MPI.COMM_WORLD`` by default); CuPy buffers are staged
    through host memory."""

    name = "mpi"

    def __init__(self, comm: Any = None) -> None:
        from mpi4py import MPI  # the optional extra: imported only when asked for

        self.mpi = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = int(self.comm.Get_rank()), int(self.comm.Get_size())

    def allreduce(self, buf: Array) -> None:
        """Sum ``buf`` over the ranks in place (through host memory for a device buffer)."""
        if self.size == 1:
            return
        if type(buf).__module__.startswith("cupy"):
            device: Any = buf
            host = device.get()
            self.comm.Allreduce(self.mpi.IN_PLACE, host, op=self.mpi.SUM)
            device.set(host)
            return
        self.comm.Allreduce(self.mpi.IN_PLACE, buf, op=self.mpi.SUM)

    def bcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        return self.comm.bcast(obj, root=0)

    def abort(self, code: int) -> None:
        """``MPI_Abort``: the process manager ends every rank, and ``mpiexec`` exits ``code``."""
        self.comm.Abort(code)


def launched() -> bool:
    """Whether this process was started by an MPI process manager as one of several ranks."""
    sizes = [os.environ.get(k) for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")]
    return any(s not in (None, "", "1") for s in sizes) or "PMIX_RANK" in os.environ


def world() -> Comm:
    """The communicator of every process of this job: MPI's world when ``mpi4py`` is
    installed, else :class:`LocalComm` (one process). The same object on every call.

    Raises ImportError when ``mpiexec`` started several processes but ``mpi4py`` is missing
    (each would otherwise train alone, all writing the same run).
    """
    global _world
    if _world is None:
        try:
            _world = MpiComm()
        except ImportError as exc:
            if launched():
                raise ImportError(
                    "this process is one of several MPI ranks, but mpi4py is not installed: "
                    "pip install 'gpumlp[mpi]'"
                ) from exc
            _world = LocalComm()
    return _world


def abort_job(code: int) -> None:
    """End the whole job with ``code`` when this process is one of several ranks (a rank that
    stops alone would leave the others waiting in a collective); otherwise nothing."""
    if _world is not None and _world.size > 1:
        _world.abort(code)


def rank_of(comm: Comm | None) -> int:
    """``comm``'s rank; 0 for None (one process alone)."""
    return 0 if comm is None else comm.rank


def local_rows(m: int, rank: int, size: int) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of a global batch of ``m`` rows that rank ``rank`` of ``size``
    takes: consecutive parts, ``lo = rank·m // size``, sizes differing by at most one (a part
    may be empty when ``m < size``)."""
    return rank * m // size, (rank + 1) * m // size

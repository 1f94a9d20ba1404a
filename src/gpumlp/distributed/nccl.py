"""The ranks' gradient sums on the GPUs themselves: NCCL through ``cupy.cuda.nccl``, and one
GPU per rank.

:func:`select_device` gives each rank of a machine its own GPU (the rank among the machine's
ranks, modulo its GPUs: with ``CUDA_VISIBLE_DEVICES`` set per rank, device 0 is that rank's).
:func:`on_device` wraps an :class:`~gpumlp.distributed.comm.MpiComm` for CuPy training: when
CuPy has NCCL, every rank has a GPU of its own and ``GPUMLP_NCCL`` is not ``0``, CuPy buffers
are summed by ``ncclAllReduce`` on the current stream (the communicator's unique id is sent
from rank 0 over MPI, as ChainerMN does); otherwise the MPI communicator stages them through
host memory, which works everywhere (several ranks on one GPU too, where NCCL refuses).
"""

from __future__ import annotations

import os
import socket
from typing import Any

from ..backend import Array, Namespace, backend_name, cupy_module
from .comm import Comm, MpiComm

__all__ = ["NcclComm", "on_device", "select_device"]

_made: dict[int, Comm] = {}


def _local_rank(comm: MpiComm) -> int:
    """This rank's index among the ranks on its machine."""
    shared = comm.comm.Split_type(comm.mpi.COMM_TYPE_SHARED)
    try:
        return int(shared.Get_rank())
    finally:
        shared.Free()


def select_device(comm: Comm) -> int:
    """Make the GPU of this rank (its local rank modulo the GPUs it sees) CuPy's current one,
    before any array is made; returns its index. One process alone keeps the current device."""
    cp = cupy_module()
    if not isinstance(comm, MpiComm) or comm.size == 1:
        return int(cp.cuda.Device().id)
    device = _local_rank(comm) % int(cp.cuda.runtime.getDeviceCount())
    cp.cuda.Device(device).use()
    return device


def nccl_status() -> tuple[bool, str]:
    """Whether CuPy can use NCCL here, and why not."""
    if os.environ.get("GPUMLP_NCCL", "").strip() == "0":
        return False, "GPUMLP_NCCL=0"
    try:
        nccl = cupy_module("cuda.nccl")
    except ImportError as exc:
        return False, f"CuPy has no NCCL ({exc})"
    if not getattr(nccl, "available", True):
        return False, "CuPy was built without NCCL"
    return True, ""


class NcclComm:
    """An MPI communicator whose sums of CuPy buffers run in NCCL (module docstring)."""

    name = "nccl"

    def __init__(self, comm: MpiComm) -> None:
        nccl = cupy_module("cuda.nccl")
        self.nccl, self.mpi_comm = nccl, comm
        self.rank, self.size = comm.rank, comm.size
        uid = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None)
        self.comm = nccl.NcclCommunicator(comm.size, uid, comm.rank)
        self.types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def allreduce(self, buf: Array) -> None:
        """Sum ``buf`` in place: in NCCL on the current stream for a CuPy buffer, else MPI."""
        if not type(buf).__module__.startswith("cupy"):
            self.mpi_comm.allreduce(buf)
            return
        device: Any = buf
        stream = cupy_module().cuda.get_current_stream().ptr
        ptr = device.data.ptr
        kind = self.types[str(device.dtype)]
        self.comm.allReduce(ptr, ptr, device.size, kind, self.nccl.NCCL_SUM, stream)

    def bcast(self, obj: Any) -> Any:
        """Rank 0's ``obj``, over MPI."""
        return self.mpi_comm.bcast(obj)

    def abort(self, code: int) -> None:
        """End the job (MPI_Abort)."""
        self.mpi_comm.abort(code)


def on_device(comm: Comm, xp: Namespace) -> Comm:
    """The communicator training on ``xp`` uses: :class:`NcclComm` on CuPy when NCCL can run
    (module docstring), else ``comm`` itself. Made once per communicator."""
    if backend_name(xp) != "cupy" or not isinstance(comm, MpiComm) or comm.size == 1:
        return comm
    if id(comm) not in _made:
        usable, _ = nccl_status()
        cp = cupy_module()
        mine = (socket.gethostname(), cp.cuda.Device().pci_bus_id)
        seats = comm.comm.allgather(mine)
        own_gpu = len(set(seats)) == comm.size  # NCCL refuses two ranks on one GPU
        # every rank decides alike: NCCL's set-up is collective
        use = comm.comm.allreduce(int(usable and own_gpu), op=comm.mpi.MIN)
        _made[id(comm)] = NcclComm(comm) if use else comm
    return _made[id(comm)]

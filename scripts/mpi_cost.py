"""The cost of data-parallel training per step: the allreduce of the packed gradients beside
the step itself, on the book's network [784, 30, 10] at batch 10 (float32, NumPy).

Run it under MPI; rank 0 prints one line::

    OPENBLAS_NUM_THREADS=1 mpiexec -n 2 python3 scripts/mpi_cost.py
    OPENBLAS_NUM_THREADS=1 mpiexec -n 1 python3 scripts/mpi_cost.py   # the step alone

The step time is one epoch of 10,000 random examples at global batch 10 (1,000 steps) divided
by its steps (on one rank also without a communicator); the allreduce time is the mean of 2,000
sums of the packed gradient buffer alone.
"""

from __future__ import annotations

import time

import numpy as np

from gpumlp import Network
from gpumlp.distributed import Comm, world
from gpumlp.distributed.sync import Reducer

SIZES, N, BATCH = [784, 30, 10], 10_000, 10


def main() -> None:
    comm = world()
    net = Network(SIZES, seed=0, backend="numpy", dtype="float32")
    rng = np.random.default_rng(1)
    X, y = rng.random((N, SIZES[0])), rng.integers(10, size=N)
    reducer = Reducer(comm, net.params, xp=np)
    for _ in range(100):  # warm up
        comm.allreduce(reducer.flat)
    start = time.perf_counter()
    reps = 2000
    for _ in range(reps):
        comm.allreduce(reducer.flat)
    allreduce = (time.perf_counter() - start) / reps
    step = _step_time(net, X, y, comm)
    if comm.rank == 0:
        kb = reducer.flat.nbytes / 1e3
        alone = f" (without a communicator {_step_time(net, X, y, None) * 1e6:.0f} µs)"
        print(f"ranks {comm.size}: step {step * 1e6:.0f} µs at global batch {BATCH}"
              f"{alone if comm.size == 1 else ''}, allreduce of {kb:.0f} KB "
              f"{allreduce * 1e6:.1f} µs")  # fmt: skip


def _step_time(net: Network, X: np.ndarray, y: np.ndarray, comm: Comm | None) -> float:
    """Seconds per step of one epoch at global batch BATCH, after an epoch to warm up."""
    net.fit(X, y, epochs=1, batch_size=BATCH, lr=3.0, seed=2, comm=comm)
    start = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=BATCH, lr=3.0, seed=2, comm=comm)
    return (time.perf_counter() - start) / (N // BATCH)


if __name__ == "__main__":
    main()

"""How ``scripts/bench.py`` times a row: the clocks, the warm-up epoch, the repeats within the
budget, and gpumlp's own rows (``Network.fit``) and PyTorch's CPU thread counts."""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

import gpumlp
from bench_peers import torch_epoch
from bench_report import epoch_flops
from gpumlp.threads import usable_cpus


def warmup_rows(case: Any, n: int) -> int:
    """The warm-up epoch's samples: all ``n``, or ``case.warmup_batches`` batches plus the
    last, partial batch's rows, so the warm-up keeps its shape (compiled code is
    shape-specific)."""
    rows = n if case.warmup_batches is None else case.warmup_batches * case.batch_size
    return min(n, rows + n % case.batch_size)


def measure(epoch: Any, case: Any, n: int, opts: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then time ``opts.repeats`` epochs (fewer if they would exceed ``opts.budget`` s).

    ``epoch(rows)`` trains one epoch over the first ``rows`` samples and returns its seconds.
    """
    rows = warmup_rows(case, n)
    estimate = epoch(rows) * n / rows
    repeats = opts.repeats
    if opts.budget > 0 and estimate * repeats > opts.budget:
        repeats = max(1, math.floor(opts.budget / estimate))
    times = [epoch(n) for _ in range(repeats)]
    median = statistics.median(times)
    return {
        "median": median,
        "min": min(times),
        "repeats": times,
        "samples_per_s": n / median,
        "gflops": epoch_flops(case.sizes, n) / median / 1e9,
        "threads": None,
        "repeats_lowered": repeats < opts.repeats,
    }


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
"""``--clock``: elapsed seconds, or the CPU seconds of the process (all its threads)."""


class _NoBar:
    """A progress bar that shows nothing (``fit``'s ``progress`` hook marks the epoch start)."""

    def update(self, k: int) -> None:
        pass

    def close(self) -> None:
        pass


def bench_gpumlp(
    case: Any, backend: str, X: Any, y: Any, opts: argparse.Namespace, engine: str = "auto"
) -> dict:
    """Time ``Network.fit`` epochs with ``engine``; ``X`` (n, 784) float32, ``y`` (n,) int64.

    On the wall clock an epoch is its ``seconds`` record; on the CPU clock it runs from the
    epoch's progress bar opening (after its order is drawn) to its ``on_epoch`` call (after
    the epoch's host reads), the same span less the ~1 ms permutation."""
    net = gpumlp.Network(list(case.sizes), init=case.init, backend=backend, seed=0)
    clock, marks = CLOCKS[opts.clock], []

    def started(**_: Any) -> _NoBar:
        marks[:] = [clock()]
        return _NoBar()

    def epoch(rows: int) -> float:
        kw = dict(batch_size=case.batch_size, lr=case.lr, monitor=("train_cost",), engine=engine)
        if opts.clock == "cpu":
            kw |= dict(progress=started, on_epoch=lambda record: marks.append(clock()))
        record = net.fit(X[:rows], y[:rows], epochs=1, shuffle=True, **kw).records[0]
        return marks[1] - marks[0] if opts.clock == "cpu" else record["seconds"]

    return measure(epoch, case, len(X), opts)


def bench_torch_cpu(torch: Any, case: Any, X: Any, y: Any, opts: argparse.Namespace) -> dict:
    """torch-cpu with 1 thread and with as many as the process may run on (``taskset``); the
    faster one is the peer."""
    before, runs = torch.get_num_threads(), {}
    try:
        for t in sorted({1, usable_cpus()}):
            torch.set_num_threads(t)
            made = torch_epoch(torch, case, "torch-cpu", X, y, CLOCKS[opts.clock])
            measured = measure(made, case, len(X), opts)
            runs[t] = {**measured, "threads": t}
    finally:
        torch.set_num_threads(before)
    best = min(runs.values(), key=lambda r: r["median"])
    return {**best, "by_threads": {str(t): r for t, r in runs.items()}}

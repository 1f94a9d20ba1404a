"""Benchmark gpumlp's training speed (seconds per epoch, GFLOP/s) against PyTorch and JAX.

What is measured: plain mini-batch SGD on ``n`` random inputs (uniform [0, 1), 784 values, random
labels 0..9; the speed does not depend on the data), sigmoid hidden and output layers, quadratic
cost, for each case (``sizes@batch_size``) and each backend:

* ``numpy``, ``cupy``: ``gpumlp.Network.fit``; an epoch's wall time is its ``seconds`` record
  (shuffle, all steps, the train-cost monitor and the epoch's host reads; not the one-off copy
  to the device). ``--engines`` times each training engine separately (rows ``cupy-graph``,
  ``numpy-generic``, ...; ``auto`` is the plain ``numpy``/``cupy`` row), so crossovers between
  engines can be measured on the device. An engine this gpumlp does not have is skipped with a
  note, so one command line serves trees with and without it.
* ``torch-cpu``, ``torch-cuda``, ``torch-compile``: the same network in PyTorch, eager (or
  ``torch.compile(mode="reduce-overhead")``), from the same initial weights
  (``scripts/bench_peers.py``). ``torch-cpu`` runs with 1 thread and with as many as the
  process may use (``taskset``) and the faster is the peer. TF32 is off.
* ``jax-cpu``, ``jax-cuda``: the same network in JAX, a whole epoch as one jitted
  ``jax.lax.scan`` over its batches, from the same initial weights and in gpumlp's own epoch
  orders; compiled before its warm-up epoch, so no timed epoch compiles, and timed to
  ``block_until_ready``.

PyTorch and JAX are optional: without one, its rows are skipped with a note saying why.

Each (case, backend) gets one untimed warm-up epoch (a subset for the large cases), then
``--repeats`` timed epochs; the median and the minimum are reported. If the timed epochs would
take longer than ``--budget`` seconds, the repeats are lowered (never below 1) and the row is
marked ``*``. GFLOP/s is an epoch's matrix-product operations over its median time: per sample
and layer 2·n_in·n_out forward, as many for the weight gradient and, past the first layer, as
many to carry δ back (``bench_report.epoch_flops``). The run first measures the core's float32
GEMM rate in NumPy on one BLAS thread (``machine.sgemm_peak`` in the JSON), the arithmetic
limit the rows are compared with.

``--clock cpu`` times every row in the process's CPU seconds (``time.process_time``) instead of
elapsed seconds: on a shared machine a pinned core is time-shared with other processes, which
stretches elapsed time but not the CPU time a row uses. gpumlp's CPU clock runs from the
epoch's progress hook (after its order is drawn) to its ``on_epoch`` call. Use it with one
thread per process (a pinned core), where CPU seconds are the seconds a dedicated core takes.

Nothing measured is lost to a ``timeout`` or a kill: each row is printed (and flushed) as soon as
it is measured, and ``--json`` rewrites the whole JSON document atomically (temp file, fsync,
rename) when the run starts and after every row, so a reader sees the rows finished so far in a
complete document, never half of one. Its ``"complete"`` is ``false`` until the last row is in,
``true`` after. The full table, with the ratios, is printed once more at the end.

Reading the ratios: ``peer seconds / gpumlp seconds`` (median) against each peer on the same
kind of device (numpy against torch-cpu and jax-cpu, cupy against torch-cuda and jax-cuda), all
measured in the same run. "2.0x faster" means gpumlp needs half the peer's time per epoch;
"0.5x (slower)" means it needs twice as long.

    python scripts/bench.py --json bench.json           # all cases on every backend found
    python scripts/bench.py --quick --backends numpy    # a smoke run
    python scripts/bench.py --backends cupy torch-cuda jax-cuda --engines generic fused graph auto

On one pinned core (docs/benchmarks.md has the command the table there comes from):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \\
      XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
      taskset -c 1 python scripts/bench.py --backends numpy torch-cpu jax-cpu

This workplace sets OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which slow NumPy down: unset both in
the benchmark command, never in tests or CI.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bench_peers import available_backends, import_jax, import_torch, jax_epoch, torch_epoch
from bench_report import (
    TABLE_HEAD,
    add_ratios,
    format_row,
    machine_info,
    peak_line,
    print_table,
    sgemm_peak_gflops,
)
from bench_timing import CLOCKS, bench_gpumlp, bench_torch_cpu, measure, warmup_rows
from gpumlp.atomicio import atomic_write_bytes
from gpumlp.config import ENGINES


@dataclass(frozen=True)
class Case:
    sizes: tuple[int, ...]
    batch_size: int
    lr: float
    init: str = "normal"
    gpu_only: bool = False  # on CPU backends only with --all or when named in --cases
    warmup_batches: int | None = None  # None: a full warm-up epoch


CASES = {
    "784-30-10@10": Case((784, 30, 10), 10, 3.0),
    "784-30-10@100": Case((784, 30, 10), 100, 3.0),
    "784-30-10@1000": Case((784, 30, 10), 1000, 3.0),
    "784-800-10@100": Case((784, 800, 10), 100, 3.0, warmup_batches=50),
    "784-4096-4096-10@1024": Case((784, 4096, 4096, 10), 1024, 0.1, "scaled", True, 8),
}
BACKENDS = ("numpy", "cupy", "torch-cpu", "torch-cuda", "torch-compile", "jax-cpu", "jax-cuda")
GPU_BACKENDS = ("cupy", "torch-cuda", "torch-compile", "jax-cuda")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def write_json(path: str, doc: dict[str, Any]) -> None:
    """Replace ``path`` with ``doc`` whole: a kill leaves the previous version, never half."""
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, help="samples per epoch (default 50000; 5000 with --quick)")
    p.add_argument("--repeats", type=int, help="timed epochs per row (default 3; 1 with --quick)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), metavar="CASE", help=", ".join(CASES))
    p.add_argument(
        "--backends", nargs="+", choices=BACKENDS, metavar="NAME", help=", ".join(BACKENDS)
    )
    p.add_argument(
        "--engines",
        "--engine",
        dest="engines",
        nargs="+",
        default=["auto"],
        metavar="ENGINE",
        help=f"gpumlp's training engines to time, each its own row (default: auto); this "
        f"gpumlp has {', '.join(ENGINES)}, and any other is skipped with a note",
    )
    p.add_argument("--all", action="store_true", help="also run the GPU-sized case on CPU backends")
    p.add_argument("--quick", action="store_true", help="n=5000, 1 repeat: a smoke run")
    p.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="wall",
        help="wall: elapsed seconds per epoch "
        "(default); cpu: the process's CPU seconds, for a pinned core other processes share",
    )
    p.add_argument("--budget", type=float, default=120.0, help="max s of timed epochs per row")
    p.add_argument(
        "--json", metavar="PATH", help="results and machine info, rewritten after every row"
    )
    p.add_argument(
        "--peak-size",
        type=int,
        help="n of the n×n float32 GEMM measuring the core's peak "
        "(default 2048; 1024 with --quick; 0: not measured)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every repeat")
    args = p.parse_args(argv)
    args.n = args.n if args.n is not None else (5000 if args.quick else 50_000)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if args.peak_size is None:
        args.peak_size = 1024 if args.quick else 2048
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.peak_size < 0:
        p.error(f"--peak-size must be >= 0, got {args.peak_size}")
    return args


def row_jobs(
    peers: dict[str, Any], case: Case, backend: str, X: Any, y: Any, opts: argparse.Namespace
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The rows ``backend`` gives for ``case``, each as ``(label, measure)``: one per engine on
    numpy and cupy (``auto`` is the plain backend row; ``graph`` and ``persistent`` are CuPy's
    only, ``native`` NumPy's), else one. ``peers`` holds the imported ``torch`` and ``jax``
    modules (or None)."""
    if backend in ("numpy", "cupy"):
        return [
            (
                backend if engine == "auto" else f"{backend}-{engine}",
                functools.partial(bench_gpumlp, case, backend, X, y, opts, engine),
            )
            for engine in opts.engines
            if engine in ENGINES and (engine not in ("graph", "persistent") or backend == "cupy")
            if engine != "native" or backend == "numpy"
        ]
    torch, jax = peers["torch"], peers["jax"]
    if backend == "torch-cpu":
        return [(backend, functools.partial(bench_torch_cpu, torch, case, X, y, opts))]
    if backend.startswith("jax"):
        warmup = warmup_rows(case, len(X))
        make = functools.partial(jax_epoch, jax, case, backend, X, y, warmup, CLOCKS[opts.clock])
    else:
        make = functools.partial(torch_epoch, torch, case, backend, X, y, CLOCKS[opts.clock])
    return [(backend, lambda: measure(make(), case, len(X), opts))]


def main(argv: list[str] | None = None) -> int:
    command = sys.argv if argv is None else ["scripts/bench.py", *argv]
    args = parse_args(command[1:])
    torch = import_torch()
    jax, no_jax = import_jax()
    info = machine_info(torch, jax, command)
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    found = available_backends(torch, jax, no_jax)
    for backend in args.backends or BACKENDS:
        if found[backend]:
            print(f"note: skipping {backend}: {found[backend]}", flush=True)
    for engine in args.engines:
        if engine not in ENGINES:
            have = ", ".join(ENGINES)
            print(f"note: skipping engine {engine}: this gpumlp has no such engine ({have})",
                  flush=True)  # fmt: skip
    backends = [b for b in args.backends or BACKENDS if not found[b]]
    settings = {"n": args.n, "repeats": args.repeats, "budget_s": args.budget, "clock": args.clock}
    settings |= {"engines": args.engines, "skipped": {b: why for b, why in found.items() if why}}
    results: dict[str, Any] = {}
    doc = {"machine": info, "settings": settings, "complete": False, "cases": results}
    if args.json:  # at once, so even a run killed before its first row leaves what it tried
        write_json(args.json, doc)
    if args.peak_size:
        info["sgemm_peak"] = peak = sgemm_peak_gflops(args.peak_size, CLOCKS[args.clock])
        print(peak_line(peak), flush=True)
    peers = {"torch": torch, "jax": jax}
    rng = np.random.default_rng(0)
    X = rng.random((args.n, 784), dtype=np.float32)
    y = rng.integers(0, 10, size=args.n, dtype=np.int64)
    print(TABLE_HEAD, flush=True)  # each row follows as soon as it is measured
    for name in args.cases or list(CASES):
        case = CASES[name]
        on_cpu_too = args.all or (args.cases is not None and name in args.cases)
        for backend in backends:
            if case.gpu_only and not on_cpu_too and backend not in GPU_BACKENDS:
                continue
            _log(f"bench: {name} on {backend} (n={args.n}) ...")
            for label, job in row_jobs(peers, case, backend, X, y, args):
                try:
                    row = job()
                except Exception as exc:  # torch.compile can fail in many ways; report, go on
                    # an engine asked for by name that does not apply (persistent: a network
                    # beyond one block's shared memory; one of another backend) is a row saying
                    # why, too
                    refused = isinstance(exc, ValueError) and str(exc).startswith("engine=")
                    if backend != "torch-compile" and not refused:
                        raise
                    why = (str(exc).strip().splitlines() or [""])[0]
                    row = {"error": f"failed: {type(exc).__name__}: {why}"}
                entry = results.setdefault(name, {**asdict(case), "n": args.n, "backends": {}})
                entry["backends"][label] = row
                add_ratios(entry["backends"])
                if args.json:  # the file first: a row on the screen is a row in the file
                    write_json(args.json, doc)
                print(format_row(name, label, row, args.verbose), flush=True)
    if results:  # again, whole, with the ratios of rows measured before their peer
        print()
        print_table(results, args.verbose)
    if any(r.get("repeats_lowered") for per in results.values() for r in per["backends"].values()):
        print(f"* fewer than {args.repeats} repeats: more would exceed --budget {args.budget:g} s")
    if args.json:
        info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        doc["complete"] = True
        write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

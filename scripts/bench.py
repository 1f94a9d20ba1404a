"""Benchmark gpumlp's training speed (seconds per epoch, samples per second) against PyTorch.

What is measured: plain mini-batch SGD on ``n`` random inputs (uniform [0, 1), 784 values, random
labels 0..9; the speed does not depend on the data), sigmoid hidden and output layers, quadratic
cost, for each case (``sizes@batch_size``) and each backend:

* ``numpy``, ``cupy``: ``gpumlp.Network.fit``; an epoch's time is its ``seconds`` record (shuffle,
  all steps, the train-cost monitor and the epoch's host reads; not the one-off copy to the
  device). ``--engines`` times each training engine separately (rows ``cupy-graph``,
  ``numpy-generic``, ...; ``auto`` is the plain ``numpy``/``cupy`` row), so crossovers between
  engines can be measured on the device.
* ``torch-cpu``, ``torch-cuda``, ``torch-compile``: the same network in PyTorch, from the same
  initial weights, written the usual way: data on the device, ``torch.randperm`` per epoch,
  ``X[idx]`` per batch, ``nn.Sequential(Linear, Sigmoid, ...)``, ``optim.SGD``, the running loss
  kept on the device and read once per epoch. ``torch-cpu`` runs with 1 and with
  ``os.cpu_count()`` threads and the faster counts; ``torch-compile`` is
  ``torch.compile(mode="reduce-overhead")`` of model + loss. TF32 is off. PyTorch is optional:
  without it those rows are skipped with a note.

Each (case, backend) gets one untimed warm-up epoch (a subset for the large cases), then
``--repeats`` timed epochs; the median is reported. If the timed epochs would take longer than
``--budget`` seconds, the repeats are lowered (never below 1) and the row is marked ``*``.

Nothing measured is lost to a ``timeout`` or a kill: each row is printed (and flushed) as soon as
it is measured, and ``--json`` rewrites the whole JSON document atomically (temp file, fsync,
rename) when the run starts and after every row, so a reader sees the rows finished so far in a
complete document, never half of one. Its ``"complete"`` is ``false`` until the last row is in,
``true`` after. The full table, with the ratios, is printed once more at the end.

Reading the ratio: ``torch seconds / gpumlp seconds`` against the PyTorch peer on the same kind of
device (numpy vs the faster torch-cpu, cupy vs eager torch-cuda). "2.0x faster" means gpumlp needs
half PyTorch's time per epoch; "0.5x (slower)" means it needs twice as long.

    python scripts/bench.py --json bench.json           # all cases on every backend found
    python scripts/bench.py --quick --backends numpy    # a smoke run
    python scripts/bench.py --backends cupy torch-cuda --engines generic fused graph persistent auto

This workplace sets OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, which slow NumPy down: unset both in
the benchmark command (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py``),
never in tests or CI.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import gpumlp
from gpumlp.atomicio import atomic_write_bytes
from gpumlp.backend import cuda_info, cupy_status, to_host
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
BACKENDS = ("numpy", "cupy", "torch-cpu", "torch-cuda", "torch-compile")
GPU_BACKENDS = ("cupy", "torch-cuda", "torch-compile")
PEERS = {"numpy": "torch-cpu", "cupy": "torch-cuda"}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _measure(epoch: Any, case: Case, n: int, opts: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then time ``opts.repeats`` epochs (fewer if they would exceed ``opts.budget`` s).

    ``epoch(rows)`` trains one epoch over the first ``rows`` samples and returns its seconds. A
    warm-up subset keeps the shape of the last, partial batch (compiled code is shape-specific).
    """
    rows = n if case.warmup_batches is None else case.warmup_batches * case.batch_size
    rows = min(n, rows + n % case.batch_size)
    estimate = epoch(rows) * n / rows
    repeats = opts.repeats
    if opts.budget > 0 and estimate * repeats > opts.budget:
        repeats = max(1, math.floor(opts.budget / estimate))
    times = [epoch(n) for _ in range(repeats)]
    median = statistics.median(times)
    lowered = repeats < opts.repeats
    return {
        "median": median,
        "repeats": times,
        "samples_per_s": n / median,
        "threads": None,
        "repeats_lowered": lowered,
    }


def bench_gpumlp(
    case: Case, backend: str, X: Any, y: Any, opts: argparse.Namespace, engine: str = "auto"
) -> dict:
    """Time ``Network.fit`` epochs with ``engine``; ``X`` (n, 784) float32, ``y`` (n,) int64."""
    net = gpumlp.Network(list(case.sizes), init=case.init, backend=backend, seed=0)

    def epoch(rows: int) -> float:
        kw = dict(batch_size=case.batch_size, lr=case.lr, monitor=("train_cost",), engine=engine)
        return net.fit(X[:rows], y[:rows], epochs=1, shuffle=True, **kw).records[0]["seconds"]

    return _measure(epoch, case, len(X), opts)


def bench_torch(
    torch: Any, case: Case, kind: str, X: Any, y: Any, opts: argparse.Namespace
) -> dict:
    """Time the same network in PyTorch; ``kind`` is torch-cpu, torch-cuda or torch-compile."""
    device = "cpu" if kind == "torch-cpu" else "cuda"
    torch.manual_seed(0)
    layers: list[Any] = []
    init = gpumlp.Network(list(case.sizes), init=case.init, backend="numpy", seed=0)
    for w, b in zip(init.weights, init.biases, strict=True):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(to_host(w)))
            lin.bias.copy_(torch.from_numpy(to_host(b)))
        layers += [lin, torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=case.lr)

    def loss_fn(x: Any, t: Any) -> Any:
        return 0.5 * ((model(x) - t) ** 2).sum(1).mean()

    if kind == "torch-compile":
        loss_fn = torch.compile(loss_fn, mode="reduce-overhead")

    def step(x: Any, t: Any) -> Any:
        if kind == "torch-compile":
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x, t)
        loss.backward()
        opt.step()
        return loss.detach()

    Xd = torch.from_numpy(X).to(device)
    Yd = torch.nn.functional.one_hot(torch.from_numpy(y), case.sizes[-1]).float().to(device)

    def epoch(rows: int) -> float:
        start = time.perf_counter()
        idx = torch.randperm(rows, device=device)
        running = torch.zeros((), device=device)
        for k in range(0, rows, case.batch_size):
            batch = idx[k : k + case.batch_size]
            running = running + step(Xd[batch], Yd[batch])
        if device == "cuda":
            torch.cuda.synchronize()
        running.item()  # the one host read per epoch, like gpumlp's train_cost monitor
        return time.perf_counter() - start

    if kind == "torch-compile":  # compile and record the CUDA graphs before _measure's warm-up
        epoch(min(len(X), 8 * case.batch_size + len(X) % case.batch_size))
    return _measure(epoch, case, len(X), opts)


def bench_torch_cpu(torch: Any, case: Case, X: Any, y: Any, opts: argparse.Namespace) -> dict:
    """torch-cpu with 1 and with ``os.cpu_count()`` threads; the faster one is the peer."""
    before, runs = torch.get_num_threads(), {}
    try:
        for t in sorted({1, os.cpu_count() or 1}):
            torch.set_num_threads(t)
            runs[t] = {**bench_torch(torch, case, "torch-cpu", X, y, opts), "threads": t}
    finally:
        torch.set_num_threads(before)
    best = min(runs.values(), key=lambda r: r["median"])
    return {**best, "by_threads": {str(t): r for t, r in runs.items()}}


def available_backends(torch: Any) -> dict[str, str]:
    """Map each backend to "" if it can run here, else to the reason it cannot."""
    cupy_ok, cupy_why = cupy_status()
    no_torch = "" if torch is not None else "torch is not importable"
    no_cuda = no_torch or ("" if torch.cuda.is_available() else "torch sees no CUDA device")
    return {
        "numpy": "",
        "cupy": "" if cupy_ok else cupy_why,
        "torch-cpu": no_torch,
        "torch-cuda": no_cuda,
        "torch-compile": no_cuda,
    }


def machine_info(torch: Any, command: list[str]) -> dict[str, Any]:
    cupy_ok, cupy_why = cupy_status()
    gpu = cupy_why.removeprefix("CUDA device ") if cupy_ok else None
    if gpu is None and torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpumlp": gpumlp.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "cupy": cuda_info()["cupy"] if cupy_ok else None,
        "gpu": gpu,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
    }


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{ratio:.1f}x (slower)"


def add_ratios(per: dict[str, Any]) -> None:
    """Give each row of one case whose PyTorch peer has been measured its ``ratio`` and ``peer``."""
    for label, r in per.items():
        peer = PEERS.get(label.split("-")[0])
        if peer and "median" in r and "median" in per.get(peer, {}):
            r["ratio"] = per[peer]["median"] / r["median"]
            r["peer"] = peer


TABLE_HEAD = f"{'case':<22} {'backend':<18} {'s/epoch':>9} {'samples/s':>11}  vs PyTorch"


def format_row(name: str, backend: str, r: dict[str, Any], verbose: bool = False) -> str:
    """One table row (and with ``verbose`` a line of repeats per thread count)."""
    if "error" in r:
        return f"{name:<22} {backend:<18} {'-':>9} {'-':>11}  {r['error']}"
    label = backend + (f" (t={r['threads']})" if r["threads"] else "")
    label += "*" if r["repeats_lowered"] else ""
    ratio = format_ratio(r.get("ratio")) if "ratio" in r else ""
    lines = [f"{name:<22} {label:<18} {r['median']:>9.3f} {r['samples_per_s']:>11,.0f}  {ratio}"]
    for t, rt in (r.get("by_threads") or {"": r}).items() if verbose else ():
        reps = ", ".join(f"{s:.3f}" for s in rt["repeats"])
        lines.append(f"{'':<22}   {'threads=' + t if t else 'repeats':<16} [{reps}]")
    return "\n".join(line.rstrip() for line in lines)


def print_table(results: dict[str, Any], verbose: bool) -> None:
    print(TABLE_HEAD)
    print("-" * len(TABLE_HEAD))
    for name, per in results.items():
        for backend, r in per["backends"].items():
            print(format_row(name, backend, r, verbose))


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
        choices=ENGINES,
        default=["auto"],
        metavar="ENGINE",
        help="gpumlp's training engines to time, each its own row (default: auto)",
    )
    p.add_argument("--all", action="store_true", help="also run the GPU-sized case on CPU backends")
    p.add_argument("--quick", action="store_true", help="n=5000, 1 repeat: a smoke run")
    p.add_argument("--budget", type=float, default=120.0, help="max s of timed epochs per row")
    p.add_argument(
        "--json", metavar="PATH", help="results and machine info, rewritten after every row"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print every repeat")
    args = p.parse_args(argv)
    args.n = args.n if args.n is not None else (5000 if args.quick else 50_000)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def row_jobs(
    torch: Any, case: Case, backend: str, X: Any, y: Any, opts: argparse.Namespace
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The rows ``backend`` gives for ``case``, each as ``(label, measure)``: one per engine on
    numpy and cupy (``auto`` is the plain backend row; ``graph`` and ``persistent`` are CuPy's
    only, ``native`` NumPy's), else one."""
    if backend in ("numpy", "cupy"):
        return [
            (
                backend if engine == "auto" else f"{backend}-{engine}",
                functools.partial(bench_gpumlp, case, backend, X, y, opts, engine),
            )
            for engine in opts.engines
            if engine not in ("graph", "persistent") or backend == "cupy"
            if engine != "native" or backend == "numpy"
        ]
    if backend == "torch-cpu":
        return [(backend, functools.partial(bench_torch_cpu, torch, case, X, y, opts))]
    return [(backend, functools.partial(bench_torch, torch, case, backend, X, y, opts))]


def main(argv: list[str] | None = None) -> int:
    command = sys.argv if argv is None else ["scripts/bench.py", *argv]
    args = parse_args(command[1:])
    torch = _import_torch()
    info = machine_info(torch, command)
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    found = available_backends(torch)
    for backend in args.backends or BACKENDS:
        if found[backend]:
            print(f"note: skipping {backend}: {found[backend]}", flush=True)
    backends = [b for b in args.backends or BACKENDS if not found[b]]
    settings = {"n": args.n, "repeats": args.repeats, "budget_s": args.budget}
    settings |= {"engines": args.engines, "skipped": {b: why for b, why in found.items() if why}}
    results: dict[str, Any] = {}
    doc = {"machine": info, "settings": settings, "complete": False, "cases": results}
    if args.json:  # at once, so even a run killed before its first row leaves what it tried
        write_json(args.json, doc)
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
            for label, measure in row_jobs(torch, case, backend, X, y, args):
                try:
                    row = measure()
                except Exception as exc:  # torch.compile can fail in many ways; report, go on
                    # an engine asked for by name that does not apply (persistent: a network
                    # beyond one block's shared memory) is a row saying why, too
                    refused = isinstance(exc, ValueError) and "does not apply here" in str(exc)
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

"""What ``scripts/bench.py`` reports besides the timings: the machine and versions, an epoch's
FLOPs, the core's float32 GEMM rate (the limit the rows are compared with), the ratios against
the peers, and the table."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import os
import platform
from typing import Any

import numpy as np

import gpumlp
from gpumlp.backend import cuda_info, cupy_status
from gpumlp.threads import usable_cpus

PEERS = {"numpy": ("torch-cpu", "jax-cpu"), "cupy": ("torch-cuda", "jax-cuda")}
"""Each gpumlp backend's peers on the same kind of device: PyTorch eager first, then JAX."""


def machine_info(torch: Any, jax: Any, command: list[str]) -> dict[str, Any]:
    """The machine, the versions of gpumlp and its peers, the thread settings, the command."""
    cupy_ok, cupy_why = cupy_status()
    gpu = cupy_why.removeprefix("CUDA device ") if cupy_ok else None
    if gpu is None and torch is not None and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
    env = ("OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "XLA_FLAGS")
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cpus(),  # 1 under taskset -c 1
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpumlp": gpumlp.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "jax": jax.__version__ if jax is not None else None,
        "jaxlib": _jaxlib_version() if jax is not None else None,
        "cupy": cuda_info()["cupy"] if cupy_ok else None,
        "gpu": gpu,
        "env": {k: os.environ.get(k) for k in env},  # None: unset
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
    }


def _jaxlib_version() -> str:
    import jaxlib

    return str(jaxlib.__version__)


def epoch_flops(sizes: tuple[int, ...], n: int) -> int:
    """Floating-point operations of the matrix products of an epoch over ``n`` samples: per
    batch of m rows and layer, 2·m·n_in·n_out forward (z = a Wᵀ) and as many for the weight
    gradient (BP4: δᵀ a), and for every layer but the first as many again to carry δ back
    (BP2: δ W; the inputs need no gradient); the pointwise work is left out."""
    products = [a * b for a, b in itertools.pairwise(sizes)]
    return 2 * n * (2 * sum(products) + sum(products[1:]))


def sgemm_peak_gflops(size: int, clock: Any, repeats: int = 5) -> dict[str, Any]:
    """The core's float32 arithmetic rate as NumPy reaches it: the best of ``repeats`` (size,
    size) @ (size, size) products on one BLAS thread, timed on ``clock``, and the BLAS doing
    them. Without threadpoolctl the BLAS runs as many threads as the environment gives it
    (``OPENBLAS_NUM_THREADS``), and ``blas`` says so."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        threadpool_info, limit = None, contextlib.nullcontext()
    else:
        limit = threadpool_limits(1, user_api="blas")
    rng = np.random.default_rng(1)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    with limit:
        np.matmul(a, b, out=out)
        times = []
        for _ in range(repeats):
            start = clock()
            np.matmul(a, b, out=out)
            times.append(clock() - start)
        if threadpool_info is None:
            blas: Any = "unknown: threadpoolctl is not installed (threads as the environment sets)"
        else:
            keys = ("internal_api", "version", "architecture", "num_threads")
            blas = [{k: i.get(k) for k in keys} for i in threadpool_info()
                    if i.get("user_api") == "blas"]  # fmt: skip
    return {"gflops": 2 * size**3 / min(times) / 1e9, "size": size, "blas": blas}


def peak_line(peak: dict[str, Any]) -> str:
    """The line that reports :func:`sgemm_peak_gflops`'s result."""
    blas = peak["blas"]
    if not isinstance(blas, str):
        blas = ", ".join(f"{b['internal_api']} {b['version']} {b['architecture']}" for b in blas)
    n = peak["size"]
    return f"peak: {peak['gflops']:.1f} GFLOP/s, float32 {n}² GEMM in NumPy ({blas})"


def format_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x faster" if ratio >= 1 else f"{ratio:.1f}x (slower)"


def add_ratios(per: dict[str, Any]) -> None:
    """Give each gpumlp row of one case ``ratios``: each measured peer's median seconds over
    the row's (``ratio`` and ``peer``: the PyTorch one's, as before JAX was a peer)."""
    for label, r in per.items():
        for peer in PEERS.get(label.split("-")[0], ()):
            if "median" in r and "median" in per.get(peer, {}):
                r.setdefault("ratios", {})[peer] = per[peer]["median"] / r["median"]
        torch_peer = [p for p in r.get("ratios", {}) if p.startswith("torch")]
        if torch_peer:
            r["ratio"], r["peer"] = r["ratios"][torch_peer[0]], torch_peer[0]


TABLE_HEAD = (
    f"{'case':<16} {'backend':<17} {'s/epoch':>8} {'min s':>8} {'samples/s':>10} "
    f"{'GFLOP/s':>7}  {'vs PyTorch':<15} vs JAX"
)


def format_row(name: str, backend: str, r: dict[str, Any], verbose: bool = False) -> str:
    """One table row (and with ``verbose`` a line of repeats per thread count)."""
    if "error" in r:
        return f"{name:<16} {backend:<17} {'-':>8} {'-':>8} {'-':>10} {'-':>7}  {r['error']}"
    label = backend + (f" (t={r['threads']})" if r["threads"] else "")
    label += "*" if r["repeats_lowered"] else ""
    vs = {kind: "" for kind in ("torch", "jax")}
    for peer, ratio in r.get("ratios", {}).items():
        vs[peer.split("-")[0]] = format_ratio(ratio)
    lines = [
        f"{name:<16} {label:<17} {r['median']:>8.3f} {r['min']:>8.3f} "
        f"{r['samples_per_s']:>10,.0f} {r['gflops']:>7.2f}  {vs['torch']:<15} {vs['jax']}"
    ]
    for t, rt in (r.get("by_threads") or {"": r}).items() if verbose else ():
        reps = ", ".join(f"{s:.3f}" for s in rt["repeats"])
        lines.append(f"{'':<16}   {'threads=' + t if t else 'repeats':<15} [{reps}]")
    return "\n".join(line.rstrip() for line in lines)


def print_table(results: dict[str, Any], verbose: bool) -> None:
    print(TABLE_HEAD)
    print("-" * len(TABLE_HEAD))
    for name, per in results.items():
        for backend, r in per["backends"].items():
            print(format_row(name, backend, r, verbose))

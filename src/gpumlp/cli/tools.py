"""``gpumlp data fetch|info`` (the MNIST cache), ``gpumlp plot`` (learning curves) and
``gpumlp kernels`` (the generated CUDA source)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..data.fetch import MNIST_FILENAME, MNIST_SIZE, cache_dir, fetch_mnist, mnist_info, source
from ..engines._kernels import kernel_source

__all__ = ["add_parsers", "ensure_mnist"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``data``, ``plot`` and ``kernels`` to the subcommands; return their handlers."""
    d = sub.add_parser("data", parents=parents, help="the MNIST cache")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("--force", action="store_true", help="fetch again even if cached")
    pl = sub.add_parser("plot", parents=parents, help="PNG learning curves of a run folder")
    pl.add_argument("run_dir")
    pl.add_argument("--out", default=None, help="folder for the PNGs (default: the run folder)")
    k = sub.add_parser("kernels", parents=parents, help="print the generated CUDA C source")
    k.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="the type of `real` in the kernels (default float32)")  # fmt: skip
    return {"data": run_data, "plot": run_plot, "kernels": run_kernels}


def ensure_mnist(*, force: bool = False) -> Path:
    """The cached MNIST file, fetched first if missing (or ``force``): what is fetched and from
    where is said on stderr, with a progress bar when stderr is a terminal."""
    path = cache_dir() / MNIST_FILENAME
    if path.is_file() and not force:
        return path
    print(
        f"gpumlp: fetching MNIST ({MNIST_FILENAME}, {MNIST_SIZE / 1e6:.1f} MB) from "
        f"{source()} into {path}",
        file=sys.stderr,
        flush=True,
    )
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=MNIST_SIZE, unit="B", unit_scale=True, file=sys.stderr, leave=False)
    try:
        done = [0]

        def progress(now: int, total: int) -> None:
            if bar is not None:
                bar.update(now - done[0])
            done[0] = now

        return fetch_mnist(force=force, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def run_data(args: argparse.Namespace) -> int:
    """Fetch MNIST into the cache, or describe the cache as JSON; a cache that is not as it
    should be (the file missing, of another size or digest) is then an error naming what is
    wrong, so the exit code says it too."""
    if args.action == "fetch":
        print(f"MNIST is at {ensure_mnist(force=args.force)}")
        return 0
    info = mnist_info()
    print(json.dumps(info, indent=1), flush=True)
    if info["ok"]:
        return 0
    fix = "fetch it again with: gpumlp data fetch --force"
    if not info["exists"]:
        problem, fix = "is not in the cache", "fetch it with: gpumlp data fetch"
    elif info["size"] != info["expected_size"]:
        problem = f"holds {info['size']:,} bytes, not the {info['expected_size']:,} expected"
    else:
        problem = f"has SHA-256 {info['sha256']}, not the expected {info['expected_sha256']}"
    raise ValueError(f"MNIST {info['path']} {problem}: {fix}")


def run_plot(args: argparse.Namespace) -> int:
    """Draw cost.png and accuracy.png (a regression's mse.png, mae.png, r2.png) of a run
    folder; print their paths."""
    from ..runs.plotting import plot_run

    for path in plot_run(Path(args.run_dir), Path(args.out) if args.out else None):
        print(path)
    return 0


def run_kernels(args: argparse.Namespace) -> int:
    """Print the full CUDA C source the fast paths compile, for ``args.dtype``."""
    sys.stdout.write(kernel_source(args.dtype))
    return 0

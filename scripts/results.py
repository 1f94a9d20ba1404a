"""Reproduce the book's MNIST results (and one recipe beyond them) and write a Markdown table.

Each configuration trains on the book's 50,000 training images, evaluates the 10,000 test images
after every epoch, and is repeated over several seeds; the table reports mean ± standard deviation
of the final and of the best epoch's test accuracy, never the best seed alone.

    python scripts/results.py --out docs/results.json   # everything (about an hour, 2 cores)
    python scripts/results.py --only book-30 --seeds 0 1 2       # one configuration
    python scripts/results.py --table docs/results.json          # print the Markdown table again
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import gpumlp
from gpumlp.data.mnist import load_mnist

# name: (book's figure, Network kwargs, fit kwargs)
CONFIGS: dict[str, tuple[str, dict, dict]] = {
    "book-30": (
        "~95% (ch. 1)",
        {"sizes": [784, 30, 10]},
        {"epochs": 30, "batch_size": 10, "lr": 3.0},
    ),
    "book-100": (
        "96.59% (ch. 1)",
        {"sizes": [784, 100, 10]},
        {"epochs": 30, "batch_size": 10, "lr": 3.0},
    ),
    "book-100-f64": (
        "96.59% (ch. 1; the book computes in float64)",
        {"sizes": [784, 100, 10], "dtype": "float64"},
        {"epochs": 30, "batch_size": 10, "lr": 3.0},
    ),
    "book-30-ce-l2": (
        "~95.5-96% (ch. 3)",
        {"sizes": [784, 30, 10], "cost": "cross_entropy", "init": "scaled"},
        {"epochs": 30, "batch_size": 10, "lr": 0.5, "l2": 5.0},
    ),
    "book-100-ce-l2": (
        "~98% (ch. 3)",
        {"sizes": [784, 100, 10], "cost": "cross_entropy", "init": "scaled"},
        {"epochs": 60, "batch_size": 10, "lr": 0.5, "l2": 5.0},
    ),
    "beyond": (
        "(not in the book)",
        {
            "sizes": [784, 1024, 1024, 10],
            "activation": "relu",
            "output_activation": "softmax",
            "cost": "log_likelihood",
            "init": "he",
        },
        {
            "epochs": 30,
            "batch_size": 100,
            "lr": 0.05,
            "optimizer": "momentum",
            "momentum": 0.9,
            "dropout": 0.3,
            "schedule": "cosine",
        },
    ),
}


def _command(name: str, seed: int) -> str:
    _, net_kw, fit_kw = CONFIGS[name]
    flags = {**net_kw, **fit_kw, "seed": seed}
    parts = ["gpumlp train"]
    for key, value in flags.items():
        if isinstance(value, list):
            value = ",".join(map(str, value))
        parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def run(name: str, seed: int, data) -> dict:
    """Train one configuration with one seed; returns its per-epoch test accuracies and time."""
    (X, y), _, test = data
    _, net_kw, fit_kw = CONFIGS[name]
    net = gpumlp.Network(**net_kw, seed=seed)
    start = time.perf_counter()
    hist = net.fit(X, y, validation_data=test, seed=seed, monitor=("val_accuracy",), **fit_kw)
    seconds = time.perf_counter() - start
    accs = hist.column("val_accuracy")
    return {
        "config": name,
        "seed": seed,
        "backend": net.backend,
        "seconds": seconds,
        "final": accs[-1],
        "best": max(accs),
        "best_epoch": accs.index(max(accs)),
        "accuracies": accs,
        "command": _command(name, seed),
    }


def _fmt(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    spread = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {spread:.2f}"


def table(report: dict) -> str:
    """Markdown table: one row per configuration, aggregated over its seeds."""
    lines = [
        "| configuration | book | seeds | final test accuracy % | best epoch's test accuracy % | "
        "seconds per run | command (seed 0) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (book, _, _) in CONFIGS.items():
        runs = [r for r in report["runs"] if r["config"] == name]
        if not runs:
            continue
        secs = statistics.mean(r["seconds"] for r in runs)
        lines.append(
            f"| {name} | {book} | {len(runs)} | {_fmt([r['final'] for r in runs])} | "
            f"{_fmt([r['best'] for r in runs])} | {secs:.0f} | `{runs[0]['command']}` |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the configurations (or print the table of a saved report); returns an exit code."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data", default=None, help="MNIST path (default: the cache)")
    p.add_argument("--out", default="results.json", help="JSON report, updated after every run")
    p.add_argument("--table", default=None, metavar="JSON", help="only print the table of a report")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    data = load_mnist(args.data)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"runs": []}
    report["machine"] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "gpumlp": gpumlp.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    for name in args.only:
        for seed in args.seeds:
            result = run(name, seed, data)
            report["runs"] = [r for r in report["runs"] if (r["config"], r["seed"]) != (name, seed)]
            report["runs"].append(result)
            out.write_text(json.dumps(report, indent=1))
            print(
                f"{name} seed {seed}: final {result['final']:.4f}, best {result['best']:.4f} "
                f"(epoch {result['best_epoch']}), {result['seconds']:.0f} s",
                flush=True,
            )
    print(table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

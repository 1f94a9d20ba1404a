"""``gpumlp parity``: train one network on two backends (or dtypes) and compare step by step.

See :mod:`gpumlp.runs.parity` for what is compared and the tolerances. With no ``--backends``, it
compares NumPy with CuPy where CuPy can run, else NumPy float64 with NumPy float32 (and says
so). Exit codes: 0 agree, 1 mismatch, 2 bad arguments or a backend that cannot run here.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import backend
from ..runs.parity import compare, synthetic
from ..settings import DEFAULTS
from ._args import Defaults, add_flag, check_output_path, number

__all__ = ["add_parsers", "format_report", "run"]

_ALIASES = {module: name for name, module in backend.NAMESPACES.items() if module != name} | {
    "array_api_compat.numpy": "numpy", "array_api_compat.cupy": "cupy",
}  # fmt: skip
_KNOWN = ["numpy", "cupy", *backend.NAMESPACES, *_ALIASES]
"""The backends ``--backends`` takes: known names only (a namespace module's own name, such as
``jax.numpy``, stands for its short name). Nothing else is imported, and nothing ever from the
current directory (:func:`gpumlp.backend.import_namespace`)."""


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``parity`` to the subcommands; return its handler."""
    p = sub.add_parser(
        "parity",
        parents=parents,
        help="compare two backends or dtypes step by step",
        description="Train one network on two backends (or two dtypes) from the same weights "
        "and batches, and report the first step where they disagree beyond the tolerance. "
        "Exit 0: they agree; 1: a mismatch; 2: bad arguments.",
        formatter_class=Defaults,
    )
    p.add_argument(
        "--backends",
        nargs=2,
        default=None,
        metavar=("A", "B"),
        choices=_KNOWN,
        help=f"two of {', '.join(_KNOWN)} (default: numpy cupy where CuPy runs, else numpy "
        "numpy in float64 and float32)",
    )
    add_flag(p, "dtype", default=None, help="both sides' dtype (default: float64)")
    p.add_argument(
        "--dtypes", nargs=2, choices=backend.DTYPES, default=None, metavar=("A", "B"),
        help="each side's dtype",
    )  # fmt: skip
    # The settings' types, bounds and choices are the table's (gpumlp.settings); the defaults
    # are the table's too, but for a short run (1 epoch) from a fixed seed.
    D = DEFAULTS
    add_flag(p, "sizes", default=",".join(map(str, D["sizes"])), help="layer sizes")
    add_flag(p, "batch_size", default=D["batch_size"], help="mini-batch size")
    p.add_argument(
        "--steps", type=number(int, 0), default=10, help="training steps compared one by one"
    )
    add_flag(p, "epochs", default=1, help="epochs of Network.fit")
    p.add_argument("--data", default=None, help="MNIST path (default: synthetic data)")
    p.add_argument(
        "--n",
        type=number(int, 1),
        default=None,
        help="training examples (default: all, or 2000 synthetic)",
    )
    add_flag(p, "seed", default=0, help="weights, batches and data")
    add_flag(p, "engine", default=D["engine"], help="the second side's engine")
    add_flag(p, "activation", default=D["activation"], help="hidden layers")
    add_flag(
        p,
        "output_activation",
        default=D["output_activation"],
        help="output layer (default: --activation)",
    )
    add_flag(p, "cost", default=D["cost"], help="cost function")
    add_flag(p, "init", default=D["init"], help="initial weights")
    add_flag(p, "optimizer", default=D["optimizer"], help="optimizer")
    add_flag(p, "momentum", default=D["momentum"], help="μ for momentum/nesterov")
    add_flag(p, "lr", default=D["lr"], help="learning rate")
    add_flag(p, "l2", default=D["l2"], help="L2 penalty λ")
    p.add_argument("--json", default=None, metavar="PATH", help="write the full report here")
    return {"parity": run}


def _sides(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    if args.dtype and args.dtypes:
        raise ValueError("give --dtype or --dtypes, not both")
    if args.backends is not None:
        names = [_ALIASES.get(name, name) for name in args.backends]
        return names, args.dtypes or [args.dtype or "float64"] * 2
    usable, reason = backend.cupy_status()
    if usable:
        return ["numpy", "cupy"], args.dtypes or [args.dtype or "float64"] * 2
    print(
        f"gpumlp parity: CuPy cannot run here ({reason}); comparing NumPy float64 with NumPy "
        "float32 instead (give --backends to choose)",
        file=sys.stderr,
    )
    return ["numpy", "numpy"], args.dtypes or ["float64", "float32"]


def run(args: argparse.Namespace) -> int:
    """Run the comparison; print the report (and write it as JSON); the exit code. Bad
    arguments and failures raise, for :func:`gpumlp.cli.main` to report (exit 2)."""
    if args.json is not None:  # refused before anything runs or is said
        check_output_path(args.json, "--json", "the report")
    names, dtypes = _sides(args)
    if "cupy" in names:
        backend.use_fp32_matmul()  # TF32 would swamp float32 parity (gpumlp.runs.parity)
    xps = [backend.get_namespace(n) for n in names]
    if args.data:
        from ..data.mnist import load_mnist

        (X, y), _, (X_test, y_test) = load_mnist(args.data)
        X, y = X[: args.n], y[: args.n]
    else:
        (X, y), (X_test, y_test) = synthetic(args.n or 2000, 500, args.sizes, args.seed)
    config = {
        k: getattr(args, k)
        for k in (
            "sizes",
            "batch_size",
            "steps",
            "epochs",
            "seed",
            "engine",
            "activation",
            "output_activation",
            "cost",
            "init",
            "optimizer",
            "momentum",
            "lr",
            "l2",
        )
    }
    config["data"] = args.data or "synthetic"
    report = compare(
        list(zip(names, xps, dtypes, strict=True)), ((X, y), (X_test, y_test)), config=config
    )
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, default=float)
    return 0 if report["verdict"] == "agree" else 1


def format_report(report: dict[str, Any]) -> str:
    """The report as the text ``gpumlp parity`` prints."""
    c, t = report["config"], report["tolerances"]
    lines = [
        f"parity: {report['backends'][0]} {report['dtypes'][0]} vs {report['backends'][1]} "
        f"{report['dtypes'][1]} (reference {report['reference']}); engines {report['engines']}",
        f"  sizes {c['sizes']}, batch {c['batch_size']}, n {c['n']} ({c['n_batches']} batches), "
        f"test {c['n_test']}, data {c['data']}, seed {c['seed']}, lr {c['lr']}, "
        f"{c['activation']}/{c['output_activation'] or c['activation']}/{c['cost']}, "
        f"{c['optimizer']}, init {c['init']}",
        f"  tolerance: rel <= {t['rel_per_step']:g} x (1 + step) for start and steps; "
        "epoch tensors and costs: info",
        f"  accuracy: {t['accuracy_band']}",
        f"  {'phase':<7} {'tensor':<11} {'max abs':>10} {'max rel':>10} {'worst/tol':>10}  first",
    ]
    for r in report["tensors"]:
        first = "-" if r["first_exceeded"] is None else f"step {r['first_exceeded']}"
        if not r["judged"]:
            first = "(info)"
        if "band" in r:  # an accuracy row: max_abs is |b - c| in examples
            abs_ = f"{r['max_abs']:.0f} ex"
            first += f"  b={r['only_ref_right']} c={r['only_other_right']}"
        else:
            abs_ = f"{r['max_abs']:.3e}"
        lines.append(
            f"  {r['phase']:<7} {r['tensor']:<11} {abs_:>10} {r['max_rel']:>10.3e} "
            f"{r['worst_ratio']:>10.3g}  {first}"
        )
    f = report["final"]
    lines.append(
        f"  final test accuracy {f['reference']['accuracy']:.4f} vs {f['other']['accuracy']:.4f}, "
        f"cost {f['reference']['cost']:.6g} vs {f['other']['cost']:.6g}"
    )
    first = report["first_exceeded"]
    if first is None:
        lines.append("verdict: agree")
    else:
        lines.append(
            f"verdict: MISMATCH, first exceeded at step {first['step']} "
            f"({first['phase']}, {first['tensor']})"
        )
    return "\n".join(lines)

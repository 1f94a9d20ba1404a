"""The ``gpumlp`` command: a thin shell over the Python API.

Subcommands: ``train`` (the book's first network on MNIST by default), ``eval``, ``predict``,
``data fetch|info``, ``plot`` and ``parity``. Flags carry the Python API's names and defaults.

Exit codes: 0 success; 1 parity mismatch; 2 bad input (one line on stderr, no traceback unless
``--debug``); 3 training diverged; 130 interrupted (Ctrl-C) after checkpointing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .activations import ACTIVATIONS
from .backend import BACKEND_NAMES, DTYPES, BackendUnavailableError
from .costs import COSTS
from .network import INITS
from .optim import OPTIMIZERS
from .schedules import SCHEDULES
from .train import ENGINES

__all__ = ["main"]

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class UsageError(ValueError):
    """Bad command-line input, reported as one line and exit code 2."""


def _sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 784,30,10, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpumlp", description="Train multilayer perceptrons on NumPy or CuPy."
    )
    p.add_argument("--version", action="version", version=f"gpumlp {__version__}")
    p.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="log which backend was chosen, and why"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a network on MNIST (default: the book's [784,30,10])")
    net = t.add_argument_group("network")
    net.add_argument(
        "--sizes", type=_sizes, default=[784, 30, 10], help="layer sizes (default 784,30,10)"
    )
    net.add_argument(
        "--activation", default="sigmoid", choices=[a for a in ACTIVATIONS if a != "softmax"]
    )
    net.add_argument(
        "--output-activation", default=None, choices=list(ACTIVATIONS), help="default: --activation"
    )
    net.add_argument("--cost", default="quadratic", choices=list(COSTS))
    net.add_argument("--init", default="normal", choices=list(INITS))
    net.add_argument("--dtype", default="float32", choices=list(DTYPES))
    net.add_argument(
        "--backend", default="auto", help=f"one of {', '.join(BACKEND_NAMES)} (default auto)"
    )
    tr = t.add_argument_group("training")
    tr.add_argument("--lr", type=float, default=3.0, help="learning rate η (default 3.0)")
    tr.add_argument("--batch-size", type=int, default=10, help="mini-batch size (default 10)")
    tr.add_argument("--epochs", type=int, default=30, help="epochs (default 30)")
    tr.add_argument(
        "--seed", type=int, default=None, help="seed for initial weights and epoch order"
    )
    tr.add_argument("--optimizer", default="sgd", choices=list(OPTIMIZERS))
    tr.add_argument(
        "--momentum", type=float, default=0.9, help="μ for momentum/nesterov (default 0.9)"
    )
    tr.add_argument(
        "--l2", type=float, default=0.0, help="L2 penalty λ, the book's (λ/n)·W (default 0)"
    )
    tr.add_argument("--l1", type=float, default=0.0, help="L1 penalty λ, (λ/n)·sgn(W) (default 0)")
    tr.add_argument(
        "--dropout", type=float, default=0.0, help="dropout rate on hidden layers (default 0)"
    )
    tr.add_argument("--schedule", default="constant", choices=list(SCHEDULES))
    tr.add_argument(
        "--patience", type=int, default=None, help="early stopping (or plateau) patience in epochs"
    )
    tr.add_argument(
        "--engine",
        default="auto",
        choices=list(ENGINES),
        help="training step: auto, generic (plain xp), fused or graph (CuPy fast paths)",
    )
    tr.add_argument(
        "--monitor-set",
        default="test",
        choices=["test", "validation"],
        help="set evaluated after each epoch (the book: test)",
    )
    io = t.add_argument_group("data and output")
    io.add_argument(
        "--data",
        default=None,
        help="mnist.pkl.gz, an IDX folder or mnist.npz (default: cache/fetch)",
    )
    io.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    io.add_argument(
        "--out",
        default=None,
        help="run folder for history, model, checkpoint (default runs/<time>)",
    )
    io.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N epochs")
    io.add_argument("--resume", default=None, help="continue from a checkpoint file or run folder")
    io.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser(
        "eval", help="accuracy, cost and confusion matrix of a model on the test set"
    )
    e.add_argument("model", help="model or checkpoint .npz")
    e.add_argument("--data", default=None)
    e.add_argument("--backend", default="auto")

    pr = sub.add_parser("predict", help="classify a digit image")
    pr.add_argument("model", help="model or checkpoint .npz")
    pr.add_argument("image", help="PNG (or any Pillow format), grey or colour, any size")
    pr.add_argument("--backend", default="auto")

    d = sub.add_parser("data", help="the MNIST cache")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("--force", action="store_true", help="fetch again even if cached")

    pl = sub.add_parser("plot", help="PNG learning curves of a run folder")
    pl.add_argument("run_dir")
    pl.add_argument("--out", default=None, help="folder for the PNGs (default: the run folder)")

    sub.add_parser(
        "parity", help="compare two backends step by step (see scripts/parity.py)", add_help=False
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if argv[:1] == ["parity"]:
        from .parity import main as parity_main

        return parity_main(argv[1:])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or argparse's one-line usage error (2)
        return EXIT_OK if not exc.code else EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    handler = {"train": _train, "eval": _eval, "predict": _predict, "data": _data, "plot": _plot}[
        args.command
    ]
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("gpumlp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        ValueError,
        TypeError,
        OSError,
        BackendUnavailableError,
        ImportError,
        RuntimeError,
    ) as exc:
        if debug:
            raise
        print(f"gpumlp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- train --------------------------------------------------------------------------------------


def _run_dir(args: argparse.Namespace, resume: Path | None) -> Path:
    if args.out:
        out = Path(args.out)
    elif resume is not None:  # continue writing where the interrupted run wrote
        out = resume.parent
    else:
        out = Path("runs") / time.strftime("mnist-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    probe = out / ".gpumlp-write-test"
    try:  # fail before training, not after, when the folder is read-only or the disk is full
        probe.write_bytes(b"x" * 4096)
    except OSError as exc:
        raise UsageError(f"--out {str(out)!r} is not writable: {exc.strerror or exc}") from None
    finally:
        probe.unlink(missing_ok=True)
    return out


def _resume_path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    return path / "checkpoint.npz" if path.is_dir() else path


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .datasets import load_mnist
    from .model import Network
    from .train import DivergedError

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    resume = _resume_path(args.resume)
    run_dir = _run_dir(args, resume)
    net = Network(
        args.sizes,
        activation=args.activation,
        output_activation=args.output_activation,
        cost=args.cost,
        init=args.init,
        dtype=args.dtype,
        backend=args.backend,
        seed=args.seed,
    )
    train, validation, test = load_mnist(args.data)
    X, y = train if args.limit is None else (train[0][: args.limit], train[1][: args.limit])
    watch = test if args.monitor_set == "test" else validation
    n_watch = len(watch[1])
    bar = (
        None
        if args.quiet or not sys.stdout.isatty()
        else (lambda **kw: tqdm(leave=False, unit="batch", **kw))
    )

    def report(r: dict[str, Any]) -> None:
        correct = round(r["val_accuracy"] * n_watch)
        print(
            f"Epoch {r['epoch']}: {correct} / {n_watch}  "
            f"(cost {r['val_cost']:.4f}, {r['seconds']:.2f} s)",
            flush=True,
        )

    print(
        f"gpumlp {__version__}: {net!r} on {len(y)} images, "
        f"{args.monitor_set} set after each epoch",
        flush=True,
    )
    checkpoint = run_dir / "checkpoint.npz"
    code = EXIT_OK
    try:
        history = net.fit(
            X,
            y,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            validation_data=watch,
            seed=args.seed,
            optimizer=args.optimizer,
            momentum=args.momentum,
            l2=args.l2,
            l1=args.l1,
            dropout=args.dropout,
            schedule=args.schedule,
            patience=args.patience,
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume=resume,
            engine=args.engine,
            progress=bar,
            on_epoch=report,
        )
    except DivergedError as exc:
        print(f"gpumlp: {exc}", file=sys.stderr)
        history, code = exc.history, EXIT_DIVERGED
    except KeyboardInterrupt:
        history = net.last_history
        _write_history(run_dir, history)
        print(
            f"gpumlp: interrupted; saved the state after epoch {len(history)} to {checkpoint}\n"
            f"resume with: gpumlp train --resume {run_dir} (and the same flags)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    _write_history(run_dir, history)
    net.save(run_dir / "model.npz")
    if history.stop_reason and code == EXIT_OK:
        print(f"stopped early: {history.stop_reason}")
    print(f"saved model, checkpoint and history to {run_dir}/")
    return code


def _write_history(run_dir: Path, history: Any) -> None:
    from .checkpoint import atomic_write_bytes

    atomic_write_bytes(run_dir / "history.json", history.to_json().encode())
    keys = ["epoch", "lr", "train_cost", "train_accuracy", "val_cost", "val_accuracy", "seconds"]
    rows = [",".join(keys)] + [
        ",".join("" if r.get(k) is None else repr(r[k]) for k in keys) for r in history
    ]
    atomic_write_bytes(run_dir / "history.csv", ("\n".join(rows) + "\n").encode())


# -- eval, predict ------------------------------------------------------------------------------


def _eval(args: argparse.Namespace) -> int:
    from .backend import to_host
    from .datasets import load_mnist
    from .model import load

    net = load(args.model, backend=args.backend)
    _, _, (X, y) = load_mnist(args.data)
    result = net.evaluate(X, y)
    pred = to_host(net.predict(X))
    n_out = net.sizes[-1]
    confusion = np.bincount(y * n_out + pred, minlength=n_out * n_out).reshape(n_out, n_out)
    print(
        f"{args.model}: accuracy {result['accuracy']:.4f} "
        f"({round(result['accuracy'] * len(y))} / {len(y)}), "
        f"cost {result['cost']:.4f}"
    )
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + " ".join(f"{j:5d}" for j in range(n_out)))
    for i, row in enumerate(confusion):
        print(f"{i:3d}  " + " ".join(f"{v:5d}" for v in row))
    return EXIT_OK


def _read_image(path: str, side: int) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'gpumlp[image]'") from None
    if Path(path).is_dir():
        raise UsageError(f"image {path!r} is a directory")
    try:
        with Image.open(path) as img:
            grey = img.convert("L")
            if grey.size != (side, side):
                grey = grey.resize((side, side), Image.LANCZOS)
            pixels = np.asarray(grey, dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise UsageError(f"image {path!r} is not an image Pillow can read") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 0.5:  # dark ink on light paper: MNIST is light ink on black
        pixels = 1.0 - pixels
    return pixels.reshape(1, side * side)


def _predict(args: argparse.Namespace) -> int:
    from .backend import to_host
    from .model import load

    net = load(args.model, backend=args.backend)
    side = round(net.sizes[0] ** 0.5)
    if side * side != net.sizes[0]:
        raise UsageError(f"model input has {net.sizes[0]} units, not a square image")
    scores = to_host(net.feedforward(_read_image(args.image, side)))[0]
    print(f"digit: {int(np.argmax(scores))}")
    print("scores: " + "  ".join(f"{i}:{s:.3f}" for i, s in enumerate(scores)))
    return EXIT_OK


# -- data, plot ---------------------------------------------------------------------------------


def _data(args: argparse.Namespace) -> int:
    from .datasets import fetch_mnist, mnist_info

    if args.action == "fetch":
        path = fetch_mnist(force=args.force)
        print(f"MNIST is at {path}")
        return EXIT_OK
    print(
        json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in mnist_info().items()}, indent=1
        )
    )
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from .plotting import plot_run

    for path in plot_run(Path(args.run_dir), Path(args.out) if args.out else None):
        print(path)
    return EXIT_OK

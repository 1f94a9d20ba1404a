"""The ``gpumlp`` command: a thin shell over the Python API.

Subcommands: ``train`` (the book's first network on MNIST by default), ``eval``, ``predict``,
``data fetch|info``, ``plot`` and ``parity``. Flags carry the Python API's names and defaults.

``train`` writes a run folder: ``args.json`` (the flags in effect), ``history.json`` and
``history.csv``, ``model.npz`` and ``checkpoint.npz``. ``train --resume DIR`` continues that run
with the flags of ``DIR/args.json`` (or of the checkpoint), overridden by the flags given.

Exit codes: 0 success; 1 parity mismatch; 2 bad input, unreadable or unwritable files, out of
memory (one line on stderr, ``gpumlp: error: ...``; a traceback only with ``--debug``);
3 training diverged; 130 interrupted (Ctrl-C) after checkpointing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .activations import ACTIVATIONS
from .backend import BACKEND_NAMES, DTYPES, BackendUnavailableError
from .costs import COSTS
from .network import INITS
from .optim import OPTIMIZERS
from .rundir import TRAIN_DEFAULTS, make_run_dir, out_dir, resume_path, resumed_flags
from .schedules import SCHEDULES
from .train import ENGINES

__all__ = ["main"]

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# What a command can fail with that is the user's input or environment, not a bug of gpumlp.
_REPORTED = (ValueError, TypeError, OSError, MemoryError, ImportError, RuntimeError)


class UsageError(ValueError):
    """Bad command-line input, reported as one line and exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line like every other error of the command, instead of argparse's usage block.
        raise UsageError(f"{message} (see {self.prog} --help)")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 784,30,10, got {text!r}"
        ) from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least 2 positive sizes, got {text!r}")
    return sizes


def _number(kind: type, low: float, *, strict: bool = False, high: float | None = None) -> Callable:
    """An argparse type: ``kind`` (int or float), finite, >= low (> low if strict), < high."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        if high is not None and value >= high:
            raise argparse.ArgumentTypeError(f"must lie in [{low}, {high}), got {text}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more"
    )
    p = _Parser(
        prog="gpumlp",
        parents=[common],
        description="Train multilayer perceptrons on NumPy or CuPy.",
    )
    p.add_argument("--version", action="version", version=f"gpumlp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", parents=[common], help="train a network on MNIST")
    D, keep = TRAIN_DEFAULTS, argparse.SUPPRESS  # unset flags stay unset: --resume fills them

    def flag(group: Any, name: str, help: str = "", **kw: Any) -> None:
        key = name[2:].replace("-", "_")
        group.add_argument(name, default=keep, help=f"{help} (default {D[key]})".strip(), **kw)

    net = t.add_argument_group("network")
    flag(net, "--sizes", "layer sizes, e.g. 784,30,10", type=_sizes)
    flag(net, "--activation", choices=[a for a in ACTIVATIONS if a != "softmax"])
    flag(net, "--output-activation", "None: --activation", choices=list(ACTIVATIONS))
    flag(net, "--cost", choices=list(COSTS))
    flag(net, "--init", choices=list(INITS))
    flag(net, "--dtype", choices=list(DTYPES))
    flag(net, "--backend", f"one of {', '.join(BACKEND_NAMES)}")
    tr = t.add_argument_group("training")
    flag(tr, "--lr", "learning rate η", type=_number(float, 0, strict=True))
    flag(tr, "--batch-size", "mini-batch size", type=_number(int, 1))
    flag(tr, "--epochs", "total epochs (with --resume: up to this many)", type=_number(int, 1))
    flag(tr, "--seed", "seed for initial weights and epoch order", type=_number(int, 0))
    flag(tr, "--optimizer", choices=list(OPTIMIZERS))
    flag(tr, "--momentum", "μ for momentum/nesterov", type=_number(float, 0, high=1))
    flag(tr, "--l2", "L2 penalty λ, the book's (λ/n)·W", type=_number(float, 0))
    flag(tr, "--l1", "L1 penalty λ, (λ/n)·sgn(W)", type=_number(float, 0))
    flag(tr, "--dropout", "dropout rate on hidden layers", type=_number(float, 0, high=1))
    flag(tr, "--schedule", choices=list(SCHEDULES))
    flag(tr, "--patience", "early stopping (or plateau) patience", type=_number(int, 1))
    flag(tr, "--engine", "training step: generic (plain xp) or a fast path", choices=ENGINES)
    flag(tr, "--monitor-set", "set evaluated after each epoch", choices=["test", "validation"])
    io = t.add_argument_group("data and output")
    flag(io, "--data", "mnist.pkl.gz, an IDX folder or mnist.npz; None: the cache")
    flag(io, "--limit", "train on the first N images only", type=_number(int, 1))
    flag(io, "--checkpoint-every", "checkpoint every N epochs", type=_number(int, 1))
    io.add_argument("--out", default=None, help="run folder (default runs/<time>)")
    io.add_argument("--resume", default=None, help="continue from a checkpoint or run folder")
    io.add_argument("--quiet", action="store_true", help="no progress bar")

    e = sub.add_parser("eval", parents=[common], help="accuracy and confusion matrix on test set")
    e.add_argument("model", help="model or checkpoint .npz")
    e.add_argument("--data", default=None)
    e.add_argument("--backend", default="auto")

    pr = sub.add_parser("predict", parents=[common], help="classify a digit image")
    pr.add_argument("model", help="model or checkpoint .npz")
    pr.add_argument("image", help="PNG (or any Pillow format), grey or colour, any size")
    pr.add_argument("--backend", default="auto")

    d = sub.add_parser("data", parents=[common], help="the MNIST cache")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("--force", action="store_true", help="fetch again even if cached")

    pl = sub.add_parser("plot", parents=[common], help="PNG learning curves of a run folder")
    pl.add_argument("run_dir")
    pl.add_argument("--out", default=None, help="folder for the PNGs (default: the run folder)")

    sub.add_parser("parity", help="compare two backends step by step", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    first = next((i for i, a in enumerate(argv) if not a.startswith("-")), None)
    if first is not None and argv[first] == "parity":  # its own parser and exit codes
        from .parity import main as parity_main

        return parity_main(argv[first + 1 :])
    try:
        args = _parser().parse_args(argv)
        verbose = getattr(args, "verbose", False)
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format="%(message)s"
        )
        handler = {
            "train": _train,
            "eval": _eval,
            "predict": _predict,
            "data": _data,
            "plot": _plot,
        }
        return handler[args.command](args)
    except SystemExit as exc:  # --help and --version (argparse's own exits)
        return EXIT_OK if not exc.code else EXIT_USAGE
    except KeyboardInterrupt:
        print("gpumlp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (*_REPORTED, BackendUnavailableError) as exc:
        if debug:
            raise
        print(f"gpumlp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- train --------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import atomic_write_bytes
    from .datasets import load_mnist
    from .model import Network
    from .train import DivergedError, TrainingInterrupted

    given = {k: v for k, v in vars(args).items() if k in TRAIN_DEFAULTS}
    resume = resume_path(args.resume)
    o = argparse.Namespace(**(TRAIN_DEFAULTS | (resumed_flags(resume) if resume else {}) | given))
    out = out_dir(args.out, resume)
    net = Network(
        o.sizes,
        activation=o.activation,
        output_activation=o.output_activation,
        cost=o.cost,
        init=o.init,
        dtype=o.dtype,
        backend=o.backend,
        seed=o.seed,
    )
    train, validation, test = load_mnist(o.data)
    X, y = train if o.limit is None else (train[0][: o.limit], train[1][: o.limit])
    watch = test if o.monitor_set == "test" else validation
    n_watch = len(watch[1])
    make_run_dir(out)
    flags = vars(o) | {"data": None if o.data is None else str(Path(o.data).resolve())}
    atomic_write_bytes(out / "args.json", json.dumps(flags, indent=1).encode())
    bar = None if args.quiet or not sys.stdout.isatty() else _tqdm_factory(tqdm)

    def report(r: dict[str, Any]) -> None:
        correct = round(r["val_accuracy"] * n_watch)
        print(
            f"Epoch {r['epoch']}: {correct} / {n_watch}  "
            f"(cost {r['val_cost']:.4f}, {r['seconds']:.2f} s)",
            flush=True,
        )

    print(f"gpumlp {__version__}: {net!r} on {len(y)} images, {o.monitor_set} set after each epoch")
    checkpoint = out / "checkpoint.npz"
    code = EXIT_OK
    try:
        # Overflow on the way to NaN is expected when training diverges; the epoch check says so.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            history = net.fit(
                X,
                y,
                epochs=o.epochs,
                batch_size=o.batch_size,
                lr=o.lr,
                validation_data=watch,
                seed=o.seed,
                optimizer=o.optimizer,
                momentum=o.momentum,
                l2=o.l2,
                l1=o.l1,
                dropout=o.dropout,
                schedule=o.schedule,
                patience=o.patience,
                checkpoint=checkpoint,
                checkpoint_every=o.checkpoint_every,
                resume=resume,
                engine=o.engine,
                progress=bar,
                on_epoch=report,
            )
    except DivergedError as exc:
        print(
            f"gpumlp: {exc}; resume from there with: gpumlp train --resume {out} --lr ...",
            file=sys.stderr,
        )
        history, code = exc.history, EXIT_DIVERGED
    except TrainingInterrupted as exc:  # a plain KeyboardInterrupt (before fit began) goes up
        history = exc.history
        history.save(out)
        print(
            f"gpumlp: interrupted; saved the state after epoch {len(history)} to {checkpoint}\n"
            f"resume with: gpumlp train --resume {out}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except OSError as exc:  # a checkpoint write failed mid-run (disk full, ...)
        raise UsageError(
            f"cannot write {str(exc.filename or checkpoint)!r}: {exc.strerror or exc}; "
            "the previous checkpoint, if any, is intact"
        ) from exc
    history.save(out)
    net.save(out / "model.npz")
    if history.stop_reason and code == EXIT_OK:
        print(f"stopped early: {history.stop_reason}")
    print(f"saved model, checkpoint and history to {out}/")
    return code


def _tqdm_factory(tqdm: Any) -> Callable[..., Any]:
    return lambda **kw: tqdm(leave=False, unit="batch", **kw)


# -- eval, predict ------------------------------------------------------------------------------


def _eval(args: argparse.Namespace) -> int:
    from .backend import to_host
    from .datasets import load_mnist
    from .model import load

    net = load(args.model, backend=args.backend)
    if net.sizes[0] != 784 or net.sizes[-1] != 10:
        raise UsageError(f"{args.model!r} maps {net.sizes[0]} inputs to {net.sizes[-1]} outputs, "
                         "not an MNIST classifier (784 -> 10)")  # fmt: skip
    _, _, (X, y) = load_mnist(args.data)
    result = net.evaluate(X, y)
    pred = to_host(net.predict(X))
    confusion = np.bincount(y * 10 + pred, minlength=100).reshape(10, 10)
    print(
        f"{args.model}: accuracy {result['accuracy']:.4f} "
        f"({int(np.trace(confusion))} / {len(y)}), cost {result['cost']:.4f}"
    )
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("     " + " ".join(f"{j:5d}" for j in range(10)))
    for i, row in enumerate(confusion):
        print(f"{i:3d}  " + " ".join(f"{v:5d}" for v in row))
    return EXIT_OK


def _read_image(path: str, side: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'gpumlp[image]'") from None
    if not Path(path).is_file():
        what = "is a directory" if Path(path).is_dir() else "does not exist"
        raise UsageError(f"image {path!r} {what}")
    try:
        with Image.open(path) as img:
            grey = img.convert("L")
            if grey.size != (side, side):
                grey = grey.resize((side, side), Image.LANCZOS)
            pixels = np.asarray(grey, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # Pillow's ways of failing
        raise UsageError(f"image {path!r} cannot be read: {exc}") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > 0.5:  # dark ink on light paper: MNIST is light ink on black
        pixels = 1.0 - pixels
    return pixels.reshape(1, side * side)


def _predict(args: argparse.Namespace) -> int:
    from .backend import to_host
    from .model import load

    net = load(args.model, backend=args.backend)
    side = math.isqrt(net.sizes[0])
    if side * side != net.sizes[0]:
        raise UsageError(f"{args.model!r} has {net.sizes[0]} inputs, not a square image")
    scores = to_host(net.feedforward(_read_image(args.image, side)))[0]
    print(f"digit: {int(np.argmax(scores))}")
    print("scores: " + "  ".join(f"{i}:{s:.3f}" for i, s in enumerate(scores)))
    return EXIT_OK


# -- data, plot ---------------------------------------------------------------------------------


def _data(args: argparse.Namespace) -> int:
    from .datasets import fetch_mnist, mnist_info

    if args.action == "fetch":
        print(f"MNIST is at {fetch_mnist(force=args.force)}")
    else:
        print(json.dumps(mnist_info(), indent=1))
    return EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from .plotting import plot_run

    for path in plot_run(Path(args.run_dir), Path(args.out) if args.out else None):
        print(path)
    return EXIT_OK

"""The ``gpumlp`` command: a thin shell over the Python API.

Subcommands: ``train`` (the book's first network on MNIST by default, or your own data),
``eval``, ``predict``, ``data fetch|info``, ``plot``, ``parity`` and ``sweep``. Flags carry the
Python API's names and defaults. ``main(argv=None) -> int`` is the entry point; tests call it.

Exit codes: 0 success; 1 parity mismatch; 2 bad input, unreadable or unwritable files, not
enough memory (one line on stderr, ``gpumlp: error: ...``; a traceback only with ``--debug``);
3 training diverged; 130 interrupted by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (after
checkpointing the last finished epoch); 141 the output pipe closed (``gpumlp eval | head``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from .. import signals
from .._version import __version__
from ..distributed import abort_job
from ..errors import OutOfMemory
from . import inspect, parity, predict, sweep, tools, train
from ._args import Parser, UsageError

__all__ = [
    "EXIT_DIVERGED",
    "EXIT_MISMATCH",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_USAGE",
    "UsageError",
    "main",
]

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_DIVERGED, EXIT_PIPE = 0, 1, 2, 3, 141

# What a command can fail with that is the user's input or environment, not a bug of gpumlp.
_REPORTED = (
    ValueError,
    TypeError,
    OSError,
    MemoryError,
    ImportError,
    RuntimeError,  # BackendUnavailableError and DivergedError among them
)


def _parser() -> tuple[argparse.ArgumentParser, dict[str, Callable[[argparse.Namespace], int]]]:
    common = argparse.ArgumentParser(add_help=False)  # accepted before or after the command
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more"
    )
    p = Parser(
        prog="gpumlp",
        parents=[common],
        description="Train multilayer perceptrons on NumPy or CuPy.",
    )
    p.add_argument("--version", action="version", version=f"gpumlp {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {}
    for module in (train, inspect, predict, tools, parity, sweep):
        handlers |= module.add_parsers(sub, [common])
    return p, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser, handlers = _parser()
        args = parser.parse_args(argv)
        verbose = getattr(args, "verbose", False)
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING, format="%(message)s", force=True
        )
        return handlers[args.command](args)
    except SystemExit as exc:  # --help and --version (argparse's own exits)
        return EXIT_OK if not exc.code else EXIT_USAGE
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP where a command takes them
        print("gpumlp: interrupted", file=sys.stderr, flush=True)
        abort_job(signals.exit_code(signals.signum_of(exc)))
        return signals.exit_code(signals.signum_of(exc))
    except BrokenPipeError:
        # The reader went away (``gpumlp eval | head``): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except _REPORTED as exc:
        if debug:
            raise
        print(f"gpumlp: error: {_described(exc)}", file=sys.stderr, flush=True)
        abort_job(EXIT_USAGE)  # one rank of several stopping alone would leave the rest waiting
        return EXIT_USAGE


def _described(exc: BaseException) -> str:
    """The line for ``exc``: its message, never empty; an allocation failure no estimate of
    gpumlp's foresaw (a bare ``MemoryError``, NumPy's "Unable to allocate ...") says so."""
    text = str(exc)
    if isinstance(exc, MemoryError) and not isinstance(exc, OutOfMemory):
        return (
            f"out of memory ({text or 'an allocation failed'}): this command needs more memory "
            "than is free; free some, or use less data or a smaller network"
        )
    return text or f"{type(exc).__name__} (no message)"

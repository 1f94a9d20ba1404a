"""Flags shared by the subcommands: one-line argparse errors, typed values, the train flags.

``gpumlp train`` and ``gpumlp sweep`` take the same network, training and data flags, with the
Python API's names and defaults (:data:`gpumlp.runs.rundir.TRAIN_DEFAULTS`); unset flags stay unset,
so ``--resume`` can fill them from the run it continues.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any, NoReturn

from ..activations import ACTIVATIONS, HIDDEN_ACTIVATIONS
from ..backend import BACKEND_NAMES, DTYPES, NAMESPACES
from ..config import ENGINES
from ..costs import COSTS
from ..initial import INITS
from ..optim import OPTIMIZERS
from ..runs.rundir import TRAIN_DEFAULTS
from ..schedules import SCHEDULES

__all__ = ["Defaults", "Parser", "UsageError", "add_train_flags", "number", "sizes"]


class UsageError(ValueError):
    """Bad command-line input, reported as one line and exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, like every other error of the command."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


class Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` shows each flag's default, except where there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def sizes(text: str, *, least: int = 2) -> list[int]:
    """``"784,30,10"`` -> [784, 30, 10]: comma-separated positive integers, at least ``least``."""
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers like 784,30,10, got {text!r}"
        ) from None
    if len(values) < least or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected at least {least} positive sizes, got {text!r}")
    return values


def number(
    kind: type, low: float, *, strict: bool = False, high: float | None = None
) -> Callable[[str], Any]:
    """An argparse type: ``kind`` (int or float), finite, >= low (> low if strict), < high."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        too_low = value < low or (strict and value == low)
        if high is not None and (too_low or value >= high):
            bracket = "(" if strict else "["
            raise argparse.ArgumentTypeError(f"must lie in {bracket}{low}, {high}), got {text}")
        if too_low:
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        return value

    return parse


def add_train_flags(p: argparse.ArgumentParser) -> None:
    """The network, training and data flags of ``gpumlp train`` (also ``gpumlp sweep``'s)."""
    D, unset = TRAIN_DEFAULTS, argparse.SUPPRESS

    def flag(group: Any, name: str, help: str = "", shown: str = "", **kw: Any) -> None:
        key = name[2:].replace("-", "_")
        default = shown or ("none" if D[key] is None else D[key])
        group.add_argument(name, default=unset, help=f"{help} (default {default})".strip(), **kw)

    net = p.add_argument_group("network")
    flag(net, "--sizes", "layer sizes, input first, e.g. 784,30,10", type=sizes)
    flag(
        net,
        "--hidden",
        "hidden widths, e.g. 100,50: sizes from the data's width and classes",
        type=lambda t: sizes(t, least=1),
    )
    flag(net, "--activation", choices=HIDDEN_ACTIVATIONS)
    flag(net, "--output-activation", "none: --activation", choices=list(ACTIVATIONS))
    flag(net, "--cost", choices=list(COSTS))
    flag(net, "--init", choices=list(INITS))
    flag(net, "--dtype", choices=list(DTYPES))
    flag(net, "--backend", f"one of {', '.join([*BACKEND_NAMES, *NAMESPACES])}")
    tr = p.add_argument_group("training")
    flag(tr, "--lr", "learning rate η", type=number(float, 0, strict=True))
    flag(tr, "--batch-size", "mini-batch size", type=number(int, 1))
    flag(tr, "--epochs", "total epochs (with --resume: up to this many)", type=number(int, 1))
    flag(
        tr,
        "--seed",
        "seed of initial weights and epoch order; none: drawn and printed",
        type=number(int, 0),
    )
    flag(tr, "--optimizer", choices=list(OPTIMIZERS))
    flag(tr, "--momentum", "μ for momentum/nesterov", type=number(float, 0, high=1))
    flag(tr, "--l2", "L2 penalty λ, the book's (λ/n)·W", type=number(float, 0))
    flag(tr, "--l1", "L1 penalty λ, (λ/n)·sgn(W)", type=number(float, 0))
    flag(tr, "--dropout", "dropout rate on hidden layers", type=number(float, 0, high=1))
    flag(tr, "--schedule", choices=list(SCHEDULES))
    flag(tr, "--patience", "early stopping (or plateau) patience", type=number(int, 1))
    flag(tr, "--engine", "training step: generic (plain xp) or a fast path", choices=ENGINES)
    flag(
        tr,
        "--monitor-set",
        "MNIST: the set scored after each epoch",
        choices=["test", "validation"],
    )
    io = p.add_argument_group("data")
    flag(
        io,
        "--data",
        "MNIST (pkl.gz, npz, IDX folder), or your own .npz, .csv or X.npy; "
        "none: MNIST from the cache",
    )
    flag(io, "--labels", "with --data X.npy: the labels (or targets) y.npy")
    flag(
        io,
        "--label-column",
        "with --data FILE.csv: the label column, by header name or 0-based index",
        shown="the last column",
    )
    flag(
        io,
        "--val-split",
        "hold out this fraction for validation (seeded)",
        type=number(float, 0, strict=True, high=1),
    )
    flag(
        io,
        "--standardize",
        "scale inputs by the training split's mean and std",
        action="store_const",
        const=True,
    )
    flag(io, "--limit", "train on the first N examples only", type=number(int, 1))
    flag(io, "--checkpoint-every", "checkpoint every N epochs", type=number(int, 1))

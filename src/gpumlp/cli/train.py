"""``gpumlp train``: check every flag against the data and the machine, then train in a run
folder (see :mod:`gpumlp.rundir`), printing a line per epoch.

Nothing is written until everything that can be checked has been: the flags, the data, the
network against the data, the engine against the backend, the memory it needs, and ``--out``.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import Any

from .. import signals
from .._version import __version__
from ..errors import TrainingInterrupted
from ..reporting import printing, progress_bar
from ..rundir import TRAIN_DEFAULTS, plan_folder, resume_path, resumed_flags, run_folder
from ..runner import execute, plan_run, sizes_for
from ..sources import DataSet, check_mnist_flags, load_data
from ._args import add_train_flags
from .tools import ensure_mnist

__all__ = ["add_parsers", "resolve"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``train`` to the subcommands; return its handler."""
    t = sub.add_parser(
        "train",
        parents=parents,
        help="train a network (MNIST by default)",
        description="Train a network; every flag defaults to the book's first run.",
    )
    add_train_flags(t)
    io = t.add_argument_group("run folder")
    io.add_argument("--out", default=None, help="run folder (default runs/<data>-<time>)")
    io.add_argument("--resume", default=None, help="continue from a checkpoint or run folder")
    io.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    io.add_argument("--quiet", action="store_true", help="no progress bar")
    return {"train": run}


def resolve(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None, DataSet]:
    """The flags in effect (defaults, then the resumed run's, then those given, ``sizes``
    resolved against the data), the checkpoint to resume, and the data; the seed is drawn
    when none is given."""
    given = {k: v for k, v in vars(args).items() if k in TRAIN_DEFAULTS}
    resume = resume_path(args.resume)
    flags = TRAIN_DEFAULTS | (resumed_flags(resume) if resume else {}) | given
    if flags["seed"] is None:
        flags["seed"] = secrets.randbelow(2**32)
    if flags["data"] is None:
        check_mnist_flags(flags["labels"], flags["label_column"], flags["val_split"])
        ensure_mnist()
    data = load_data(
        flags["data"],
        labels=flags["labels"],
        label_column=flags["label_column"],
        val_split=flags["val_split"],
        seed=flags["seed"],
    ).limited(flags["limit"])
    if flags["labels"] is not None:  # args.json must name it wherever eval is run from
        flags["labels"] = str(Path(flags["labels"]).expanduser().resolve())
    flags["sizes"] = sizes_for(flags, data, hidden_given="sizes" in given)
    if data.train[1].ndim == 2 and flags["sizes"][-1] != data.n_outputs:
        raise ValueError(
            f"--sizes {','.join(map(str, flags['sizes']))} ends with {flags['sizes'][-1]} "
            f"outputs, but the targets y have {data.n_outputs} columns"
        )
    return flags, resume, data


def run(args: argparse.Namespace) -> int:
    """Train as the flags say; the exit code (see :mod:`gpumlp.cli`)."""
    flags, resume, data = resolve(args)
    planned = plan_folder(args.out, resume, overwrite=args.overwrite)
    plan = plan_run(flags, data)
    with run_folder(planned, stem=data.name) as out:
        n_watch = None if plan.watch is None else len(plan.watch[1])
        where = f", {plan.scored} set after each epoch" if plan.watch is not None else ""
        unit = "images" if data.kind == "images" else "examples"
        print(
            f"gpumlp {__version__}: {plan.spec.describe()} on {len(data.train[0])} {unit}"
            f"{where}; seed {flags['seed']}",
            flush=True,
        )
        try:
            _, history, diverged = execute(
                plan,
                out,
                resume=resume,
                progress=None if args.quiet else progress_bar(),
                on_epoch=printing(None, scored=plan.scored, n_scored=n_watch),
            )
        except TrainingInterrupted as exc:
            done = len(exc.history)
            saved = f"the state after epoch {done - 1}" if done else "the initial state"
            print(
                f"gpumlp: {exc.history.stop_reason} ({signals.name(exc.signum)}); saved "
                f"{saved} to {out / 'checkpoint.npz'}\nresume with: gpumlp train --resume "
                f"{out}",
                file=sys.stderr,
            )
            return signals.EXIT_CODES.get(exc.signum, 130)
    if diverged is not None:
        print(
            f"gpumlp: {diverged}; resume from the last finite epoch with: gpumlp train "
            f"--resume {out} --lr ...",
            file=sys.stderr,
        )
        return 3
    if history.stop_reason:
        print(f"stopped early: {history.stop_reason}")
    print(f"saved model, checkpoint and history to {out}/")
    return 0

"""``gpumlp train``: check every flag against the data and the machine, then train in a run
folder (see :mod:`gpumlp.runs.rundir`), printing a line per epoch.

Nothing is written, and nothing printed, until everything that can be checked has been: the
flags, the data, the network against the data, the engine against the backend, the memory it
needs, the checkpoint a resumed run goes on from (against the network and the settings), and
``--out``. A refused command exits 2 with one line on stderr and leaves every folder as it was.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any

from .. import signals, threads
from .._version import __version__
from ..data.formats import check_mnist_flags
from ..data.sources import DataSet, load_data
from ..distributed import Comm, abort_job, select_device, world
from ..errors import TrainingInterrupted
from ..reporting import printing, progress_bar
from ..runs.advice import Stall, constant_cost, scale_advice
from ..runs.rundir import plan_folder, resume_path, resumed_flags, run_folder
from ..runs.runner import RunPlan, execute, layers_for, plan_run
from ..settings import FLAGS, SETTINGS, defaults
from ..targets import TargetScaling
from ._args import add_train_flags, number
from .tools import ensure_mnist

__all__ = ["add_parsers", "load_flags_data", "resolve"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``train`` to the subcommands; return its handler."""
    t = sub.add_parser(
        "train",
        parents=parents,
        help="train a network (MNIST by default)",
        description="Train a network; every flag defaults to the book's first run, except "
        "where --help says what a table (--data FILE) defaults to.",
    )
    add_train_flags(t)
    io = t.add_argument_group("run folder")
    io.add_argument("--out", default=None, help="run folder (default runs/<data>-<time>)")
    io.add_argument("--resume", default=None, help="continue from a checkpoint or run folder")
    io.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    io.add_argument("--quiet", action="store_true", help="no progress bar")
    io.add_argument(
        "--threads",
        type=number(int, 1),
        help="BLAS threads (default: BLAS's own, all cores): a share each for runs side by side",
    )
    t.add_argument(
        "--distributed",
        action="store_true",
        help="train one network on every process of an MPI job: mpiexec -n P gpumlp train "
        "--distributed ...; --batch-size is the global batch (needs gpumlp[mpi])",
    )
    return {"train": run}


def resolve(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], Path | None, int, DataSet, list[str]]:
    """The flags in effect (defaults, then the resumed run's, then those given, ``sizes``
    resolved against the data), the checkpoint to resume and the epochs it holds (0 for
    none), the data, and the names of the flags that took a table's default; the seed is
    drawn when none is given. The data is loaded with the flags that read it (which have no
    data-dependent default), then the defaults that depend on the data
    (:func:`gpumlp.settings.defaults`) fill what neither the run nor the command line set."""
    given = {k: v for k, v in vars(args).items() if k in FLAGS}
    resume = resume_path(args.resume)
    resumed, done = resumed_flags(resume) if resume else ({}, 0)
    chosen = resumed | given
    if chosen.get("seed") is None:
        chosen["seed"] = secrets.randbelow(2**32)
    data = load_flags_data(defaults() | chosen)
    flags = defaults(data) | chosen
    if flags["labels"] is not None:  # args.json must name it wherever eval is run from
        flags["labels"] = str(Path(flags["labels"]).expanduser().resolve())
    flags |= layers_for(flags, data, given=given)
    tabled = [k for k in FLAGS if k not in chosen and SETTINGS[k].table_default is not None
              and data.kind == "table" and _matters(k, flags, data)]  # fmt: skip
    return flags, resume, done, data, tabled


def _matters(name: str, flags: dict[str, Any], data: DataSet) -> bool:
    """Whether the flag ``name`` changes this run, and is not said on its own: it has a value,
    and the early stopping it steers, or the choice of split it makes, happens (the task is
    said on its own)."""
    if name == "task":
        return False
    if name == "stop_on":
        return flags["patience"] is not None or flags["schedule"] == "plateau"
    if name == "monitor_set":
        return data.validation is not None and data.test is not None
    return flags[name] is not None


def _as_flags(flags: dict[str, Any], names: list[str]) -> str:
    """``names`` as the command line would give them their values (``--hidden 32``)."""
    words = []
    for name in names:
        flag, value = "--" + name.replace("_", "-"), flags[name]
        if isinstance(value, bool):
            words.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, list):
            words.append(f"{flag} {','.join(map(str, value))}")
        else:
            words.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(words)


def _warn(text: str) -> None:
    print(f"gpumlp: warning: {text}", file=sys.stderr, flush=True)


def load_flags_data(flags: dict[str, Any]) -> DataSet:
    """The data the flags name (``data``, the table flags, ``val_split``, ``seed``, ``limit``,
    ``from_disk``, ``task``; ``dtype`` and ``standardize`` say what copy of X.npy training
    makes): MNIST's flags refused before it is fetched, then fetched when missing."""
    if flags["data"] is None:
        check_mnist_flags(
            flags["labels"],
            flags["label_column"],
            flags["val_split"],
            flags["drop"],
            from_disk=flags["from_disk"],
            task=flags["task"],
        )
        ensure_mnist()
    return load_data(
        flags["data"],
        labels=flags["labels"],
        label_column=flags["label_column"],
        val_split=flags["val_split"],
        seed=flags["seed"],
        drop=flags["drop"],
        from_disk=flags["from_disk"],
        dtype=flags["dtype"],
        standardize=bool(flags["standardize"]),
        task=flags["task"],
    ).limited(flags["limit"])


def run(args: argparse.Namespace) -> int:
    """Train as the flags say; the exit code (see :mod:`gpumlp.cli`).

    Ctrl-C, SIGTERM and SIGHUP stop the run after saving its finished epochs (see
    :mod:`gpumlp.signals`); the exit code is then the signal's.
    """
    with signals.stop_on_signals(), threads.limited(args.threads):
        try:
            return _train(args)
        except KeyboardInterrupt as exc:  # before the first epoch began: nothing was trained
            signum = signals.signum_of(exc)
            print(
                f"gpumlp: interrupted ({signals.name(signum)}) before training began",
                file=sys.stderr,
                flush=True,
            )
            abort_job(signals.exit_code(signum))  # the other ranks may wait for this one
            return signals.exit_code(signum)


def _interrupted(exc: TrainingInterrupted, out: Path, comm: Comm | None) -> str:
    """What an interrupted run saved, counted as the epoch lines count, and how to resume (on
    as many ranks, for ``--distributed``)."""
    checkpoint = out / "checkpoint.npz"
    saved = f"saved {exc.history.finished()} to {checkpoint}"
    again = "gpumlp train" if comm is None else f"mpiexec -n {comm.size} gpumlp train --distributed"
    return (
        f"gpumlp: {exc.history.stop_reason} ({signals.name(exc.signum)}); {saved}\n"
        f"resume with: {again} --resume {shlex.quote(str(out))}"
    )


def _resuming(checkpoint: Path, done: int, epochs: int) -> str:
    """Where a resumed run goes on, counted as the epoch lines count."""
    held = f"{checkpoint} holds {done} finished epoch{'s' if done != 1 else ''}"
    if done >= epochs:
        return f"{held}, --epochs {epochs}: nothing left to train; writing the model from it"
    return f"resuming: {held}; going on at epoch {done} up to epoch {epochs - 1}"


def _resolve_ranks(
    args: argparse.Namespace, comm: Comm | None
) -> tuple[dict[str, Any], Path | None, int, DataSet, list[str]]:
    """:func:`resolve` (alone without ``comm``); on every rank of ``--distributed``: rank 0
    first (it may fetch MNIST, and draws the seed when none is given), then the others with
    rank 0's seed."""
    if comm is None or comm.rank == 0:
        resolved = resolve(args)
        if comm is not None:
            comm.bcast(resolved[0]["seed"])
        return resolved
    args.seed = comm.bcast(None)
    return resolve(args)


def _train_rank(args: argparse.Namespace, comm: Comm, plan: RunPlan) -> int:
    """A rank other than 0 of ``--distributed``: trains beside rank 0, in its run folder
    (rank 0 names it), writing and printing nothing; exits as rank 0 does."""
    out = comm.bcast(None)
    try:
        _, _, diverged = execute(plan, Path(out), comm=comm)
    except TrainingInterrupted as exc:
        return signals.exit_code(exc.signum)
    return 3 if diverged is not None else 0


def _train(args: argparse.Namespace) -> int:
    comm = world() if args.distributed else None
    flags, resume, done, data, tabled = _resolve_ranks(args, comm)
    plan = plan_run(flags, data, resume=resume, distributed=comm is not None)
    if comm is not None and plan.spec.backend == "cupy":
        select_device(comm)  # one GPU per rank of a machine, before the network is made
    if comm is not None and comm.rank:
        return _train_rank(args, comm, plan)
    targets = data.train[1]
    if data.task == "regression" and flags["standardize"]:  # the cost of what it learns
        targets = TargetScaling.fit(targets).scaled(targets)
    stall = Stall(constant_cost(plan.spec, targets))
    planned = plan_folder(args.out, resume, overwrite=args.overwrite)
    with run_folder(planned, stem=data.name, resume=resume, overwrite=args.overwrite) as out:
        if comm is not None:
            comm.bcast(str(out))  # the other ranks wait for the folder (and its resume)
        n_watch = None if plan.watch is None else len(plan.watch[1])
        where = f", {plan.scored} set after each epoch" if plan.watch is not None else ""
        unit = "images" if data.kind == "images" else "examples"
        task = f"; task {plan.spec.task}" if data.kind == "table" else ""
        table = f"; defaults for tables: {_as_flags(flags, tabled)}" if tabled else ""
        ranks = "" if comm is None else f"; {comm.size} rank{'s' * (comm.size > 1)} ({comm.name})"
        print(
            f"gpumlp {__version__}: {plan.spec.describe()} on {len(data.train[0])} {unit}"
            f"{where}{task}; seed {flags['seed']}{table}{ranks}",
            flush=True,
        )
        for note in data.notes:
            print(f"gpumlp: note: {note}", file=sys.stderr, flush=True)
        if data.kind == "table" and not flags["standardize"]:
            if (advice := scale_advice(data.train[0])) is not None:
                _warn(advice)
        if resume is not None:
            print(_resuming(resume, done, flags["epochs"]), flush=True)
        try:
            _, history, diverged = execute(
                plan,
                out,
                progress=None if args.quiet else progress_bar(),
                on_epoch=printing(stall.then(_warn), scored=plan.scored, n_scored=n_watch),
                comm=comm,
            )
        except TrainingInterrupted as exc:
            print(_interrupted(exc, out, comm), file=sys.stderr)
            return signals.exit_code(exc.signum)
    if diverged is not None:
        again = (
            ""
            if diverged.change is None
            else f"; resume from the last finite epoch with: gpumlp train --resume "
            f"{shlex.quote(str(out))} --{diverged.change} ..."
        )
        print(f"gpumlp: {diverged}{again}", file=sys.stderr)
        return 3
    if history.stop_reason:
        print(f"stopped early: {history.stop_reason}")
    print(f"saved model, checkpoint and history to {out}/")
    return 0

"""``gpumlp sweep SPACE.toml``: search hyperparameters with Optuna, each trial a ``gpumlp
train`` run (any train flag given is shared by every trial), in the sweep folder ``--out``
(default ``sweeps/<SPACE's name>``): ``study.db`` (the default storage), ``sweep.json`` (where
the study is) and a run folder per trial. ``--workers K`` runs K children of the same command
(at most what the CPUs and memory take; they end with it: :mod:`~gpumlp.sweeps.workers`),
each with ``--threads`` BLAS threads (default: its share of the CPUs, :mod:`gpumlp.threads`);
other machines join with the same command and ``--storage``; rerunning it resumes (rules in
:mod:`~gpumlp.sweeps.studies`). Exit code 0 once the study has its N finished trials.
``--report DIR`` prints the trials, the best as a ``gpumlp train`` command, and draws their plots.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from .. import signals, threads
from .._version import __version__
from ..data.sources import DataSet
from ..runs.rundir import holds_run
from ..settings import FLAGS, defaults
from ..sweeps import workers as worker_processes
from ..sweeps.binding import bind_study, default_seed
from ..sweeps.searchspace import check_space, hold_out, read_space
from ..sweeps.storage import masked, storage_errors, storage_url, write_sweep_file
from ..sweeps.studies import LOST, run_worker
from ..sweeps.studystore import PRUNERS, heartbeat_interval, open_study, require_optuna, tally
from ..sweeps.trials import evaluate_best
from ._args import UsageError, add_train_flags, number
from .sweepreport import flag_args, report, test_line, train_command, trial_line
from .train import load_flags_data

__all__ = ["add_parsers"]


def add_parsers(sub: Any, parents: list[argparse.ArgumentParser]) -> dict[str, Any]:
    """Add ``sweep`` to the subcommands; return its handler."""
    s = sub.add_parser(
        "sweep",
        parents=parents,
        help="search hyperparameters with Optuna (pip install 'gpumlp[sweep]')",
        description="Search the flags SPACE.toml names (lr = {log = [0.01, 10]}), each trial "
        "a gpumlp train run scored on the validation split; train flags given are shared.",
    )
    s.add_argument("space", nargs="?", help="the search space, SPACE.toml")
    g = s.add_argument_group("sweep")
    g.add_argument("--trials", type=number(int, 1), default=20, help="finished trials wanted")
    g.add_argument("--workers", type=number(int, 1), help="worker processes (default 1 per GPU)")
    g.add_argument("--gpus", help="GPU ids, e.g. 0,1: one per worker (CUDA_VISIBLE_DEVICES)")
    g.add_argument(
        "--threads",
        type=number(int, 1),
        help="BLAS threads of each worker (default: the CPUs this process may use / workers)",
    )
    g.add_argument("--study", help="study name (default SPACE's file name)")
    g.add_argument("--storage", help="SQLAlchemy URL shared by workers (default sqlite in --out)")
    g.add_argument("--out", help="sweep folder (default sweeps/<study>)")
    g.add_argument("--pruner", choices=PRUNERS, default="median", help="stops hopeless trials")
    g.add_argument("--report", metavar="DIR", help="print the sweep in DIR, draw its plots")
    g.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # a child's index
    add_train_flags(s)
    return {"sweep": run}


def run(args: argparse.Namespace) -> int:
    """Sweep as the flags say, or print the report of ``--report``; the exit code."""
    if args.report is not None:
        if args.space is not None:
            raise UsageError("give SPACE.toml or --report DIR, not both")
        return report(args)
    if args.space is None:
        raise UsageError("give the search space, SPACE.toml (or --report DIR)")
    optuna = require_optuna()
    if not getattr(args, "verbose", False):
        optuna.logging.set_verbosity(optuna.logging.ERROR)
    dims, source = read_space(args.space)
    given = {k: v for k, v in vars(args).items() if k in FLAGS}
    name = args.study or Path(args.space).stem
    fixed = {"seed": default_seed(name)} | given
    data = _load(defaults() | fixed)
    check_space(dims, fixed, data, source)  # everything is checked before anything is written
    heartbeat_interval()  # GPUMLP_HEARTBEAT, when set
    out = Path(args.out) if args.out else Path("sweeps") / name
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    if holds_run(out):
        raise ValueError(
            f"--out {str(out)!r} holds a training run (gpumlp train's): a sweep writes its "
            "trials' run folders inside its own folder; choose another --out"
        )
    gpus = args.gpus.split(",") if args.gpus else []
    workers = args.workers or len(gpus) or 1
    args.threads = args.threads or worker_processes.threads_each(workers)
    if not args.worker and (workers > 1 or gpus):
        worker_processes.check_workers(workers, data)
    url = storage_url(out, args.storage)
    with storage_errors(url):  # a read-only or broken study file: one line naming it
        if args.storage is None:  # the SQLite file needs its folder; another is tried first
            out.mkdir(parents=True, exist_ok=True)
        study = open_study(url, name, pruner=args.pruner, seed=fixed["seed"])
        bind_study(study, dims, fixed, data, source)
        out.mkdir(parents=True, exist_ok=True)
        if args.worker:
            return _work(study, dims, fixed, data, out, args)
        write_sweep_file(out, name, url, str(Path(args.space).resolve()))
        print(
            f"gpumlp {__version__}: sweep {name!r} of {', '.join(dims)} on {data.name}, "
            f"{args.trials} trials, {workers} worker{'s' * (workers > 1)}, {args.pruner} "
            f"pruner; {out}/, storage {masked(url)}",
            flush=True,
        )
        if workers > 1 or gpus:
            code = _spawn(args, given, workers, gpus, url, out)
        else:
            code = _work(study, dims, fixed, data, out, args)
        return code or _summary(study, fixed, data, out, args.trials)


def _load(flags: dict[str, Any]) -> DataSet:
    """The data, with a validation split (its own, else held out: :func:`hold_out`); a
    regression refused (a sweep maximizes the validation accuracy)."""
    data = load_flags_data(flags)
    if data.task == "regression":
        raise ValueError(
            f"--data {flags['data']}: its task is regression, but a sweep maximizes the "
            "validation accuracy of classes: tune a regression with gpumlp train (or give "
            "--task classification if its labels are classes)"
        )
    return hold_out(data, flags["val_split"], flags["seed"])


def _work(study: Any, dims: Any, fixed: Any, data: DataSet, out: Path, args: Any) -> int:
    """Run trials in this process; the exit code (interrupted: the signal's)."""
    who = f"[worker {args.worker}] " if args.worker else ""

    def show(trial: Any) -> None:
        print(who + trial_line(trial), flush=True)

    def lost(trial: Any) -> None:
        print(f"gpumlp: {who}warning: {LOST % trial.number}", file=sys.stderr, flush=True)

    try:
        with threads.limited(args.threads):
            run_worker(
                study, dims, fixed, data, out, n_trials=args.trials, on_trial=show, on_lost=lost
            )
    except KeyboardInterrupt as exc:
        signum = signals.signum_of(exc)
        print(
            f"gpumlp: {who}interrupted ({signals.name(signum)}): its trial is marked failed "
            "and will be tried again; finished trials are kept: rerun the command to resume",
            file=sys.stderr,
        )
        return signals.exit_code(signum)
    return 0


def _spawn(
    args: Any, given: dict[str, Any], workers: int, gpus: list[str], url: str, out: Path
) -> int:
    """Run ``workers`` child processes of this command, one worker each; wait for them
    (:mod:`gpumlp.sweeps.workers`: they end with this process)."""
    own = {"trials": args.trials, "study": args.study, "storage": url, "out": str(out)}
    own |= {"pruner": args.pruner, "debug": "debug" in args, "verbose": "verbose" in args}
    own |= {"threads": args.threads}  # K workers on one CPU: each BLAS takes its share
    command = [sys.executable, "-m", "gpumlp", "sweep", args.space, *flag_args(given | own)]
    children = []
    for i in range(1, workers + 1):
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[(i - 1) % len(gpus)]
        children.append(([*command, "--worker", str(i)], env))
    with worker_processes.started(children) as procs:
        try:
            with signals.interrupts_from_signals():
                codes = [p.wait() for p in procs]
        except KeyboardInterrupt as exc:
            signum = signals.signum_of(exc)
            for p in procs:  # in their own session: only this process had the Ctrl-C
                if p.poll() is None:
                    p.send_signal(signum)
            for p in procs:
                p.wait()
            print(
                f"gpumlp: interrupted ({signals.name(signum)}); rerun the command to resume",
                file=sys.stderr,
            )
            return signals.exit_code(signum)
    for i, code in enumerate(codes, 1):
        if code:
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            print(f"gpumlp: worker {i} ended with {how}", file=sys.stderr)
    return 0


def _summary(study: Any, fixed: dict[str, Any], data: DataSet, out: Path, n_trials: int) -> int:
    """Print how the study stands and its best trial (scored on the test split once)."""
    counts = tally(study)
    finished = counts["finished"]
    print(
        f"study {study.study_name!r}: {finished} finished trials ({counts['COMPLETE']} "
        f"complete, {counts['PRUNED']} pruned), {counts['FAIL']} failed"
    )
    if finished < n_trials:
        print(
            f"gpumlp: error: the study has {finished} of {n_trials} finished trials; rerun the "
            "command to resume",
            file=sys.stderr,
        )
        return 2
    if counts["COMPLETE"]:
        best = study.best_trial
        print(f"best: {trial_line(best)}")
        test = evaluate_best(study, data, backend=fixed.get("backend", "auto"))
        print(test_line(study, test))
        print(f"train it: {train_command(study, best)}")
    print(f"all trials: gpumlp sweep --report {shlex.quote(str(out))}")
    return 0

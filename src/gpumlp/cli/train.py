"""``gpumlp train``: check every flag against the data and the machine, then train in a run
folder (see :mod:`gpumlp.rundir`), printing a line per epoch.

Nothing is written until everything that can be checked has been: the flags, the data, the
network against the data, the engine against the backend, the memory it needs, and ``--out``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import signals
from .._version import __version__
from ..atomicio import atomic_write_bytes
from ..config import ModelSpec, TrainConfig
from ..engines import check_engine
from ..errors import DivergedError, TrainingInterrupted
from ..memory import check_model_fits, check_training_fits
from ..model import Network
from ..reporting import epoch_line, progress_bar
from ..rundir import TRAIN_DEFAULTS, plan_folder, resume_path, resumed_flags, run_folder
from ..sources import DataSet, load_data
from ._args import UsageError, add_train_flags
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


def _sizes(o: argparse.Namespace, data: DataSet, given: dict[str, Any]) -> list[int]:
    """The layer sizes: ``--hidden`` between the data's width and outputs, else ``--sizes``,
    which must fit the data."""
    d, k = data.n_features, data.n_outputs
    if o.hidden is not None and "sizes" in given:
        raise UsageError("give --sizes or --hidden, not both")
    if o.hidden is not None:
        return [d, *o.hidden, k]
    sizes = list(o.sizes)
    if sizes[0] != d:
        raise UsageError(
            f"--sizes {','.join(map(str, sizes))} takes {sizes[0]} inputs, but the "
            f"data has {d} features per example (use --hidden to size from the data)"
        )
    if data.train[1].ndim == 1 and sizes[-1] < k and not (sizes[-1] == 1 and k == 2):
        raise UsageError(f"--sizes ends with {sizes[-1]} outputs, but the data has {k} classes")
    return sizes


def resolve(args: argparse.Namespace) -> tuple[argparse.Namespace, Path | None, DataSet]:
    """The flags in effect (defaults, then the resumed run's, then those given), the checkpoint
    to resume, and the data; the seed is drawn when none is given."""
    given = {k: v for k, v in vars(args).items() if k in TRAIN_DEFAULTS}
    resume = resume_path(args.resume)
    o = argparse.Namespace(**(TRAIN_DEFAULTS | (resumed_flags(resume) if resume else {}) | given))
    if o.seed is None:
        o.seed = secrets.randbelow(2**32)
    if o.data is None:
        ensure_mnist()
    data = load_data(o.data).limited(o.limit)
    o.sizes = _sizes(o, data, given)
    return o, resume, data


def run(args: argparse.Namespace) -> int:
    """Train as the flags say; the exit code (see :mod:`gpumlp.cli`)."""
    o, resume, data = resolve(args)
    planned = plan_folder(args.out, resume, overwrite=args.overwrite)
    spec = ModelSpec.build(
        o.sizes,
        activation=o.activation,
        output_activation=o.output_activation,
        cost=o.cost,
        init=o.init,
        dtype=o.dtype,
        backend=o.backend,
    )
    check_engine(spec, o.engine)
    X = data.train[0]
    check_model_fits(spec.sizes, spec.dtype, spec.xp, argument="--sizes")
    check_training_fits(
        spec.sizes,
        spec.dtype,
        spec.xp,
        optimizer=o.optimizer,
        n=len(X),
        batch_size=o.batch_size,
        dropout=o.dropout,
        argument="--sizes",
        early_stopping=o.patience is not None,
    )
    cfg = dict(
        epochs=o.epochs,
        batch_size=o.batch_size,
        lr=o.lr,
        seed=o.seed,
        optimizer=o.optimizer,
        momentum=o.momentum,
        l2=o.l2,
        l1=o.l1,
        dropout=o.dropout,
        schedule=o.schedule,
        patience=o.patience,
        checkpoint_every=o.checkpoint_every,
        engine=o.engine,
    )
    TrainConfig(**cfg)  # refuses bad combinations now, before the folder
    scored, watch = _scored(o, data)
    if TrainConfig(**cfg).watches_validation and watch is None:
        raise UsageError("--schedule plateau and --patience need a validation or test set")
    with run_folder(planned, stem=data.name) as out:
        flags = vars(o) | {"data": None if o.data is None else str(Path(o.data).resolve())}
        atomic_write_bytes(out / "args.json", json.dumps(flags, indent=1).encode())
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
        n_watch = None if watch is None else len(watch[1])
        where = f", {scored} set after each epoch" if watch is not None else ""
        unit = "images" if data.kind == "images" else "examples"
        print(f"gpumlp {__version__}: {net!r} on {len(X)} {unit}{where}; seed {o.seed}", flush=True)
        return _fit(net, o, args, data, out, resume, cfg, scored, watch, n_watch)


def _scored(o: argparse.Namespace, data: DataSet) -> tuple[str, Any]:
    if o.monitor_set == "validation" and data.validation is not None:
        return "validation", data.validation
    if data.test is not None:
        return "test", data.test
    return "validation", data.validation


def _fit(
    net: Network,
    o: argparse.Namespace,
    args: argparse.Namespace,
    data: DataSet,
    out: Path,
    resume: Path | None,
    cfg: dict[str, Any],
    scored: str,
    watch: Any,
    n_watch: int | None,
) -> int:
    checkpoint = out / "checkpoint.npz"
    bar = None if args.quiet else progress_bar()
    code = 0
    try:
        # Overflow on the way to NaN is expected when training diverges; the epoch check says so.
        with (
            signals.interrupts_from_signals(),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            history = net.fit(
                *data.train,
                validation_data=watch,
                checkpoint=checkpoint,
                resume=resume,
                scored=scored,
                progress=bar,
                standardize=bool(o.standardize),
                on_epoch=lambda r: print(
                    epoch_line(r, scored=scored, n_scored=n_watch), flush=True
                ),
                **cfg,
            )
    except DivergedError as exc:
        print(
            f"gpumlp: {exc}; resume from the last finite epoch with: gpumlp train --resume "
            f"{out} --lr ...",
            file=sys.stderr,
        )
        history, code = exc.history, 3
    except TrainingInterrupted as exc:
        with signals.deferred():
            exc.history.save(out)
        done = len(exc.history)
        saved = f"the state after epoch {done - 1}" if done else "the initial state"
        print(
            f"gpumlp: {exc.history.stop_reason} ({signals.name(exc.signum)}); saved {saved} "
            f"to {checkpoint}\nresume with: gpumlp train --resume {out}",
            file=sys.stderr,
        )
        return signals.EXIT_CODES.get(exc.signum, 130)
    except OSError as exc:  # a checkpoint write failed mid-run (disk full, ...)
        raise UsageError(
            f"cannot write {str(exc.filename or checkpoint)!r}: "
            f"{exc.strerror or exc}; the previous checkpoint, if any, is intact"
        ) from exc
    try:
        with signals.deferred():
            history.save(out)
            net.save(out / "model.npz")
    except OSError as exc:
        raise UsageError(
            f"cannot write {str(exc.filename or out)!r}: {exc.strerror or exc}; "
            f"training finished and {checkpoint} holds it: free space and run "
            f"gpumlp train --resume {out} to write the model"
        ) from exc
    if history.stop_reason and code == 0:
        print(f"stopped early: {history.stop_reason}")
    print(f"saved model, checkpoint and history to {out}/")
    return code

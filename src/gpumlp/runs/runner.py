"""One training run from flags, as ``gpumlp train`` and each trial of ``gpumlp sweep`` do it.

:func:`plan_run` checks everything that can be checked before a run folder is touched: the
network against the data (``--sizes`` or ``--hidden``), the names, the engine against the
backend, the memory the run needs, the training settings. :func:`execute` then writes the run
folder: ``args.json``, the checkpoint as it trains, ``history.json``/``.csv`` and ``model.npz``.
Nothing here prints; callers pass ``on_epoch`` and ``progress``.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import signals
from .._checks import first_nonfinite, overflow_text
from ..atomicio import atomic_write_bytes
from ..config import ModelSpec, TrainConfig, check_stop_on
from ..data.sources import DataSet
from ..distributed.comm import Comm, rank_of
from ..engines.select import check_engine
from ..errors import DataFileShrank, DivergedError, TrainingInterrupted
from ..files.npyview import NpyRows
from ..history import History
from ..inputs import Inputs
from ..memory import check_model_fits, check_training_fits
from ..model import Network
from ..optim import get_optimizer
from ..runstate import check_resumable
from ..settings import owned_by
from ..threads import blas_threads
from ..train import safe_magnitude

__all__ = ["FIT_FLAGS", "RunPlan", "execute", "layers_for", "plan_run"]

FIT_FLAGS = owned_by("fit", flags=True)
"""The flags that are ``Network.fit`` settings of the same name (:class:`TrainConfig`'s)."""
_NET_FLAGS = owned_by("network", flags=True)  # Network's keyword arguments, ModelSpec's


def layers_for(
    flags: dict[str, Any], data: DataSet, *, given: Collection[str] = ()
) -> dict[str, Any]:
    """``sizes`` and ``hidden`` as a run records them: ``hidden`` between the data's width and
    outputs, else ``sizes``, which must fit the data (its features; its classes, or its target
    columns exactly). A ``sizes`` among the flags ``given`` (set by the user, not defaulted)
    wins over a ``hidden`` that is only a default (a table's), which is then recorded as None.
    ValueError naming the flag otherwise."""
    d, k = data.n_features, data.n_outputs
    hidden = None if "sizes" in given and "hidden" not in given else flags.get("hidden")
    if hidden is not None:
        if "sizes" in given:
            raise ValueError("give --sizes or --hidden, not both")
        return {"sizes": [d, *hidden, k], "hidden": hidden}
    sizes = list(flags["sizes"])
    if sizes[0] != d:
        raise ValueError(
            f"--sizes {','.join(map(str, sizes))} takes {sizes[0]} inputs, but the data has "
            f"{d} features per example (use --hidden to size the network from the data)"
        )
    one_unit = sizes[-1] == 1 and k == 2
    if data.train[1].ndim == 1 and sizes[-1] < k and not one_unit:
        raise ValueError(f"--sizes ends with {sizes[-1]} outputs, but the data has {k} classes")
    if data.classes is not None and sizes[-1] != k and not one_unit:  # an output per class
        raise ValueError(
            f"--sizes ends with {sizes[-1]} outputs, but the data has {k} classes, "
            f"{', '.join(map(repr, data.classes[:10]))}{', ...' if k > 10 else ''}: give one "
            "output per class"
        )
    if data.train[1].ndim == 2 and sizes[-1] != k:
        raise ValueError(
            f"--sizes {','.join(map(str, sizes))} ends with {sizes[-1]} outputs, but the targets "
            f"y have {k} columns"
        )
    return {"sizes": sizes, "hidden": None}


@dataclass
class RunPlan:
    """A run checked and ready: the flags in effect, the network's spec, ``fit``'s settings,
    the data, the split scored after each epoch (``scored`` names it), and the checkpoint it
    resumes from (checked against the rest), if any."""

    flags: dict[str, Any]
    spec: ModelSpec
    fit: dict[str, Any]
    data: DataSet
    scored: str
    watch: tuple[Any, Any] | None
    resume: Path | None = None


def plan_run(
    flags: dict[str, Any],
    data: DataSet,
    *,
    check_values: bool = True,
    resume: Path | None = None,
    distributed: bool = False,
) -> RunPlan:
    """Check ``flags`` (with ``sizes`` resolved) against ``data`` and this machine; the values
    of the data too, unless ``check_values`` is False (a plan of the same data and dtype already
    checked them: each scan reads every value of the training and scored splits); and the
    checkpoint ``resume``, when given, against the network and the settings
    (:func:`gpumlp.runstate.check_resumable`); the engine against ``--distributed``.

    Raises ValueError/TypeError naming the flag (or the data file and the value that is not
    finite in the network's dtype), OutOfMemory naming ``--sizes``, BackendUnavailableError
    for a backend that cannot run here, CheckpointError naming the checkpoint and what does
    not match.
    """
    spec = ModelSpec.build(flags["sizes"], **{k: flags[k] for k in _NET_FLAGS})
    check_engine(spec, flags["engine"], distributed=distributed)
    if flags["engine"] == "native" and isinstance(data.train[0], NpyRows):
        raise ValueError("--engine native: X is read from its file batch by batch (--from-disk, "
                         "or too large for memory), and the native engine reads X in memory; "
                         "use --engine fused or auto")  # fmt: skip
    copies = Inputs(spec).copies(data.train[0], standardize=bool(flags.get("standardize")))
    if flags.get("from_disk") and copies:
        why = (
            f"move it to the {spec.backend} device (--from-disk is for the numpy backend)"
            if spec.backend != "numpy"
            else "standardize it (add --no-standardize)"
            if flags.get("standardize")
            else f"make it {spec.dtype} (save X.npy as such)"
        )
        raise ValueError(f"--from-disk: training would copy X into memory anyway, to {why}")
    n = len(data.train[0])
    check_model_fits(spec.sizes, spec.dtype, spec.xp, argument="--sizes")
    scored, watch = _scored(flags, data)
    check_training_fits(
        spec.sizes,
        spec.dtype,
        spec.xp,
        optimizer=flags["optimizer"],
        n=n,
        batch_size=flags["batch_size"],
        dropout=flags["dropout"],
        early_stopping=flags["patience"] is not None,
        copies_inputs=copies,
        n_val=0 if watch is None else len(watch[0]),
        argument="--sizes",
        with_parameters=True,  # planned before the network exists: its parameters count too
    )
    fit = {k: flags[k] for k in FIT_FLAGS}
    config = TrainConfig(**fit)  # refuses bad settings and combinations now
    check_stop_on(spec.task, config.stop_on)
    if config.watches_validation and watch is None:
        raise ValueError("--schedule plateau and --patience need a validation or test set")
    _check_penalties(flags, spec, n)
    for split, pair in (("training", data.train), (scored, watch)) if check_values else ():
        _check_values(flags.get("data"), spec, split, pair)
    if resume is not None:
        check_resumable(resume, spec, config, data.info().meta())
    return RunPlan(dict(flags), spec, fit, data, scored, watch, resume)


def _scored(flags: dict[str, Any], data: DataSet) -> tuple[str, tuple[Any, Any] | None]:
    """The split scored after each epoch: its name and the split (None when there is none)."""
    if flags.get("monitor_set") == "validation" and data.validation is not None:
        return "validation", data.validation
    if data.test is not None:
        return "test", data.test
    return "validation", data.validation


def _check_penalties(flags: dict[str, Any], spec: ModelSpec, n: int) -> None:
    """Refuse an L2 or L1 penalty that makes training diverge whatever the data: a step
    ``λ/n`` past the dtype's safe range (products with it overflow), or a weight decay step
    ``lr·l2/n`` past the optimizer's :meth:`~gpumlp.optim.Optimizer.decay_limit`."""
    safe = safe_magnitude(float(np.finfo(spec.dtype).max))
    for key in ("l2", "l1"):
        if (step := flags[key] / n) > safe:
            raise ValueError(
                f"--{key} {flags[key]:g}: the penalty's step {key}/n = {step:.3g} (n = {n} "
                f"training examples) is past ±{safe:.2g}, the safe range of {spec.dtype}: use "
                f"a smaller --{key}"
            )
    lr, l2 = flags["lr"], flags["l2"]
    limit = get_optimizer(flags["optimizer"], momentum=flags["momentum"]).decay_limit()
    if limit is not None and (decay := lr * l2 / n) >= limit:
        raise ValueError(
            f"--l2 {l2:g}: the weight decay step lr·l2/n = {decay:.3g} (lr {lr:g}, n = {n} "
            f"training examples) is {limit:.3g} or more, so the L2 penalty alone makes "
            f"{flags['optimizer']} diverge: use --l2 below {limit * n / lr:.3g}"
        )


def _check_values(source: str | None, spec: ModelSpec, split: str, pair: Any) -> None:
    """Refuse a split whose inputs or targets are not finite as the network's dtype holds them
    (NaN, inf, or a float64 value that overflows float32), naming the file, the split, the
    value and where it is: before any folder is made, not in the middle of ``fit``."""
    for what, arr in zip(("inputs", "targets"), () if pair is None else pair, strict=False):
        width = arr.shape[1] if what == "inputs" else 1  # inputs: the first layer's sums too
        if (bad := first_nonfinite(arr, spec.dtype, width=width)) is None:
            continue
        where = f"--data {source}" if source else "MNIST"
        value, at = arr[bad], bad[0] if len(bad) == 1 else bad
        if not np.isfinite(value):
            raise ValueError(f"{where}: the {split} {what} hold {value} at index {at}")
        why = overflow_text(value, spec.dtype, width, "train with --dtype float64")
        raise ValueError(f"{where}: the {split} {what} hold {value:g} at index {at}, {why}")


def execute(
    plan: RunPlan,
    out: Path,
    *,
    progress: Callable[..., Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    comm: Comm | None = None,
) -> tuple[Network, History, DivergedError | None]:
    """Train ``plan`` into the run folder ``out`` (made and locked by the caller), going on
    from its checkpoint when it resumes one. The network is made before ``args.json`` is
    written, so a network that does not fit in memory leaves the folder as it was. With a
    communicator ``comm`` every rank trains and rank 0 alone writes the folder's files.

    Returns the network, its history and, when training diverged, the DivergedError (the
    history and model still saved). Raises TrainingInterrupted after saving the history of the
    finished epochs; OSError when a file cannot be written (the message names the file and
    says what is intact).
    """
    flags = plan.flags
    net = Network(flags["sizes"], **{k: flags[k] for k in _NET_FLAGS}, seed=flags["seed"])
    info = plan.data.info()
    net.inputs.describe(classes=info.classes, features=info.features, kind=info.kind,
                        label=info.label)  # fmt: skip
    data = None if flags.get("data") is None else str(Path(flags["data"]).resolve())
    writes = rank_of(comm) == 0
    if writes:
        # "threads": the BLAS threads training runs on (a limit such as --threads, or BLAS's own).
        record = flags | {"data": data, "threads": blas_threads()}
        atomic_write_bytes(out / "args.json", json.dumps(record, indent=1).encode())
    checkpoint, diverged = out / "checkpoint.npz", None
    try:
        # Overflow on the way to NaN is expected when training diverges; the epoch check says so.
        with (
            signals.interrupts_from_signals(),
            np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        ):
            history = net.fit(
                *plan.data.valued(plan.data.train),
                validation_data=plan.data.valued(plan.watch),
                checkpoint=checkpoint,
                resume=plan.resume,
                scored=plan.scored,
                progress=progress,
                standardize=bool(flags.get("standardize")),
                on_epoch=on_epoch,
                comm=comm,
                **plan.fit,
            )
    except DivergedError as exc:
        history, diverged = exc.history, exc
    except TrainingInterrupted as exc:
        with signals.deferred():
            if writes:
                exc.history.save(out)
        raise
    except DataFileShrank as exc:  # X.npy cut short: the finished epochs kept, as above
        if exc.history is None:
            raise
        with signals.deferred():
            if writes:
                exc.history.save(out)
        again = shlex.quote(str(out))
        raise exc.advise(f"restore it, then resume with: gpumlp train --resume {again}") from None
    except BrokenPipeError:  # stdout closed (``| head``): the command exits quietly
        raise
    except OSError as exc:  # a checkpoint write failed mid-run (disk full, ...)
        raise _named(
            exc,
            f"cannot write {str(exc.filename or checkpoint)!r}: "
            f"{exc.strerror or exc}; the previous checkpoint, if any, is intact",
        ) from exc
    target = "the history (history.json, history.csv)"
    if not writes:
        return net, history, diverged
    try:
        with signals.deferred():
            history.save(out)
            target = repr(str(out / "model.npz"))
            net.save(out / "model.npz")
    except OSError as exc:
        raise _named(
            exc,
            f"cannot write {target}: {exc.strerror or exc}; the checkpoint {str(checkpoint)!r} "
            f"is complete ({len(history)} epochs): free space, then gpumlp train --resume "
            f"{out} writes the model and history from it",
        ) from exc
    return net, history, diverged


def _named(exc: OSError, message: str) -> OSError:
    """An OSError with ``message`` (naming the file and what is intact) and ``exc``'s errno."""
    named = OSError(message)
    named.errno = exc.errno
    return named

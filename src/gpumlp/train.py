"""Training a network's parameters to the end: the epoch loop (mini-batch training on the
device, monitoring, divergence, schedules) and :func:`train_network` around it (the run state
resumed, the engine chosen, and what happens when training stops short: Ctrl-C or a signal,
divergence, memory running out).

Nothing here prints. Per-batch progress goes to an optional ``progress`` callback, per-epoch
results to ``on_epoch`` and the logger. Inside an epoch nothing is read back to the host: the
step accumulates the cost and the correct count on the device, and they are read once per
epoch, with the weights' magnitude (for divergence); the scored split is measured once after
each epoch (:func:`evaluate_arrays`: the accuracy, or a regression's MSE, MAE and R²).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import signals
from .backend import Array, index_dtype, to_device, to_host
from .config import ModelSpec
from .distributed.comm import Comm, rank_of
from .distributed.nccl import on_device
from .distributed.sync import check_same_state, steps_hold_signals
from .engines.select import select_run_step
from .engines.steps import Data, Step, hits
from .errors import DataFileShrank, DivergedError, TrainingInterrupted
from .history import History
from .memory import explain_failure, is_out_of_memory
from .metrics import error_sums, regression_scores, scored_keys
from .network import Params, feedforward
from .runstate import TrainState, check_checkpoint_path

__all__ = ["evaluate_arrays", "run_epochs", "safe_magnitude", "train_network"]

logger = logging.getLogger(__name__)


def safe_magnitude(finfo_max: float) -> float:
    """The largest weight magnitude training accepts: √max of the dtype (1.8e19 in float32).

    Past it, products of weights in the forward and backward passes overflow, so a run whose
    weights grow there has diverged even while its cost still reads finite.
    """
    return math.sqrt(finfo_max)


def evaluate_arrays(
    spec: ModelSpec,
    params: Params,
    X: Array,
    Y: Array,
    labels: Array,
    *,
    chunk: int,
    target_std: Any = None,
) -> dict[str, float]:
    """The mean cost and the scores of the network's task (:mod:`gpumlp.metrics`) on device
    arrays X (n, n_0), Y (n, n_L), labels (n,) int64, ``chunk`` rows per forward pass:
    ``{"cost", "accuracy"}``, or for regression ``{"cost", "mse", "mae", "r2"}`` in the
    targets' units, ``target_std`` (n_L,) the standard deviations the targets ``Y`` were
    divided by (None: as they are). Floats, read back once."""
    xp = spec.xp
    n = X.shape[0]
    regression = spec.task == "regression"
    cost_sum = xp.zeros((), dtype=spec.xp_dtype)
    correct = xp.zeros((), dtype=index_dtype(xp))
    sums = xp.zeros((3, Y.shape[1]), dtype=spec.xp_dtype)
    y_mean = xp.sum(Y, axis=0) / n if regression else None
    for k in range(0, n, chunk):
        rows = slice(k, min(k + chunk, n))
        a = feedforward(params, X[rows, ...], activations=spec.activations, xp=xp)
        cost_sum = cost_sum + xp.sum(spec.cost.fn(a, Y[rows, ...], xp=xp))
        if y_mean is not None:
            sums = sums + error_sums(a, Y[rows, ...], y_mean, xp=xp)
        else:
            correct = correct + hits(a, labels[rows], xp=xp)
    if y_mean is not None:
        return {"cost": float(cost_sum) / n} | regression_scores(to_host(sums), n, target_std)
    return {"cost": float(cost_sum) / n, "accuracy": int(correct) / n}


def _largest_weight(params: Params, xp: Any) -> float:
    """max |w| over every tensor (NaN when any value is NaN), read back once."""
    return float(xp.max(xp.stack([xp.max(xp.abs(t)) for t in params.arrays()])))


_VALIDATION = "the validation cost became NaN or inf while the training cost stayed finite"
_OUT_OF_RANGE = (
    "the validation cost is NaN or inf even with the weights training started from: the "
    "validation inputs lie far outside the range of the training inputs"
)


def _validation_problem(state: TrainState, validation: Data, chunk: int) -> str:
    """What went wrong when the validation cost is not finite in the first epoch of a run: the
    weights it started from (the ones kept) may not score finite either, when the validation
    inputs lie far outside the range of the training inputs; lr is not the cause then."""
    scores = evaluate_arrays(state.spec, state.params, *validation, chunk=chunk)
    return _VALIDATION if math.isfinite(scores["cost"]) else _OUT_OF_RANGE


def _cause(limit: float | None, l2: float, lr: float, n: int, what: str) -> tuple[str, str | None]:
    """Why training diverged and what to change, and the setting to change (``"l2"``, ``"lr"``,
    or None when it is the data): the L2 decay when its step ``lr·l2/n`` alone overshoots (at
    the optimizer's ``limit``, :meth:`~gpumlp.optim.Optimizer.decay_limit`), else lr."""
    decay = lr * l2 / n
    if limit is not None and decay >= limit:
        return (
            f"{what}; the weight decay step lr·l2/n = {decay:.3g} is {limit:.3g} or more, which "
            "makes the L2 penalty itself diverge: use a smaller l2"
        ), "l2"
    if what == _OUT_OF_RANGE:
        return f"{what}; scale them as the training inputs are", None
    return f"{what}; try a smaller lr", "lr"


def run_epochs(
    state: TrainState,
    step: Step,
    data: Data,
    validation: Data | None,
    *,
    progress: Callable[..., Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> History:
    """Train ``state``'s parameters in place from ``state.epoch`` up to the config's epochs.

    ``data`` and ``validation`` are device data sets ``(X, Y, labels)``; ``step`` is the engine
    over ``data`` (:func:`gpumlp.engines.select_step`). Raises DivergedError when the training
    cost, the weights or the validation cost turn NaN or inf, or the weights leave the dtype's
    safe range; the state is first restored to the last finished epoch, whose weights scored
    finite.
    """
    spec, cfg, history = state.spec, state.config, state.history
    xp = spec.xp
    n = data[0].shape[0]
    n_batches = -(-n // cfg.batch_size)
    limit = safe_magnitude(float(xp.finfo(spec.xp_dtype).max))
    # The snapshot is the last finished epoch, restored on divergence or interruption. It is
    # taken before an epoch's line is shown, so an interrupt never drops an epoch already shown.
    state.snapshot()
    first_epoch = state.epoch
    task, measured = spec.task, cfg.measured(spec.task)
    scored = [k for k in scored_keys(task) if k in measured]
    target_std = state.inputs.get("target/std")
    while state.epoch < cfg.epochs:
        epoch = state.epoch
        start = time.perf_counter()
        lr = state.schedule.lr_for(epoch)
        # The epoch's order: a host-drawn permutation, moved once; each mini-batch is then
        # gathered by index on the device.
        perm = to_device(state.rng.permutation(n), xp) if cfg.shuffle else None
        bar = progress(total=n_batches, desc=f"epoch {epoch}") if progress else None
        try:
            cost_sum, correct = step.epoch(
                perm,
                lr,
                epoch * n_batches,
                monitor=measured,
                progress=bar.update if bar is not None else None,
            )
        finally:
            if bar is not None:
                bar.close()
        # The epoch's host reads: the monitors and the weights' magnitude.
        train_cost = float(cost_sum) / n if "train_cost" in measured else None
        largest = _largest_weight(state.params, xp)
        problem = None
        if not math.isfinite(largest) or (train_cost is not None and not math.isfinite(train_cost)):
            problem = "the training cost or the weights became NaN or inf"
        elif largest > limit:
            problem = f"the weights grew past ±{limit:.2g}, the safe range of {spec.dtype}"
        record: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_cost": train_cost}
        if task == "classification":
            record["train_accuracy"] = int(correct) / n if "train_accuracy" in measured else None
        record |= dict.fromkeys(scored_keys(task))
        if problem is None and validation is not None and scored and rank_of(state.comm) == 0:
            scores = evaluate_arrays(
                spec, state.params, *validation, chunk=cfg.chunk, target_std=target_std
            )
            if not math.isfinite(scores["cost"]):
                problem = _VALIDATION
            record |= {k: scores[k.removeprefix("val_")] for k in scored}
        if state.comm is not None:  # rank 0 scored it: every rank decides the same
            record, problem = state.comm.bcast((record, problem))
        if problem is not None:
            state.restore()
            if problem == _VALIDATION and epoch == first_epoch and validation is not None:
                problem = _validation_problem(state, validation, cfg.chunk)
            cause, change = _cause(state.optimizer.decay_limit(), cfg.l2, lr, n, problem)
            history.stop_reason = f"diverged in epoch {epoch} (lr={lr:g}): {problem}"
            raise DivergedError(epoch, lr, cause, history, change=change)
        record["seconds"] = time.perf_counter() - start
        history.records.append(record)
        state.epoch += 1
        stop = state.after_epoch(record)
        state.snapshot()
        logger.info("epoch %d: %s", epoch, {k: v for k, v in record.items() if v is not None})
        if on_epoch is not None:
            on_epoch(record)
        if stop:
            history.stop_reason = stop
            break
    state.finish()
    return history


def _stop_at_last_epoch(state: TrainState, why: str) -> None:
    """Take back the last finished epoch's state, record ``why`` training stopped during the
    next, and checkpoint it (if the config asks), while further interrupts wait."""
    with signals.deferred():
        state.restore()
        state.history.stop_reason = f"{why} during epoch {state.epoch}"
        if state.config.checkpoint is not None:
            state.save(state.config.checkpoint)


def train_network(
    state: TrainState,
    data: Data,
    validation: Data | None,
    resume: str | Path | None = None,
    progress: Callable[..., Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    comm: Comm | None = None,
) -> History:
    """Run ``state`` (resumed from the checkpoint ``resume``, if given) over the device data
    sets to its config's last epoch; see :meth:`gpumlp.Network.fit` for what it raises.

    Whatever stops training, the parameters are those of the last finished epoch, and the
    config's checkpoint (if any) holds that state, written while further interrupts wait: so
    too when the data file read as training goes shrinks (DataFileShrank, with the history).
    With a communicator ``comm`` (kept as ``state.comm``) every rank first checks that it
    starts from rank 0's state, and signals stop every rank after the same step
    (:mod:`gpumlp.distributed.sync`).
    """
    cfg, spec = state.config, state.spec
    state.comm = None if comm is None else on_device(comm, spec.xp)
    if resume is not None:
        state.load(resume)
    if cfg.checkpoint is not None:
        check_checkpoint_path(cfg.checkpoint)
    if state.comm is not None:
        check_same_state(state, state.comm)
    try:
        step = select_run_step(state, data, resumed=resume is not None)
        with steps_hold_signals() if state.comm is not None else contextlib.nullcontext():
            return run_epochs(state, step, data, validation, progress=progress, on_epoch=on_epoch)
    except KeyboardInterrupt as exc:
        _stop_at_last_epoch(state, "interrupted")
        raise TrainingInterrupted(state.history, signals.signum_of(exc)) from exc
    except DataFileShrank as exc:
        _stop_at_last_epoch(state, f"{exc.path} shrank")
        saved = None if cfg.checkpoint is None else str(cfg.checkpoint)
        raise DataFileShrank(
            exc.path, exc.size, exc.now, history=state.history, saved=saved
        ) from None
    except DivergedError:
        if cfg.checkpoint is not None:  # the last finite epoch, to resume with a smaller lr
            with signals.deferred():
                state.save(cfg.checkpoint)
        raise
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        state.restore()  # the weights of the last finished epoch, as for Ctrl-C
        raise explain_failure(
            exc,
            spec.sizes,
            spec.dtype,
            spec.xp,
            n=int(data[0].shape[0]),
            batch_size=cfg.batch_size,
            dropout=cfg.dropout,
        ) from exc

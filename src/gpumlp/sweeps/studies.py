"""Hyperparameter sweeps: Optuna studies whose trials are ``gpumlp train`` runs.

A trial trains a run folder (``OUT/trial-0007/``), reports its validation accuracy after each
epoch, may be pruned, and is worth the validation accuracy of the model it saved; the test
split scores only the best trial, once. Workers share the study through Optuna's RDB storage
(a SQLite file by default; PostgreSQL or any SQLAlchemy URL across machines). Rules:

- ``n_trials`` counts finished (complete or pruned) trials of all workers; a worker starts one
  only while finished plus running trials fall short, else waits for the running ones;
- Optuna commits each trial as it ends: a stopped worker loses only its running trial, and
  rerunning the same command resumes the study;
- a trial whose worker died is marked FAIL and its flags queued again
  (:mod:`gpumlp.sweeps.studystore`); Ctrl-C or a signal fails and queues it the same way;
- a worker that finds its trial marked failed by another (its heartbeat came late) says so
  and goes on with the next trial;
- each trial draws its parameters from its own seeded sequence
  (:mod:`gpumlp.sweeps.sampling`): no repeats across workers, machines or reruns.

Optuna is imported by the functions here, when called: ``import gpumlp`` never imports it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import signals
from .._checks import check_int
from ..data.sources import DataSet
from ..settings import FLAGS
from ..threads import check_threads, limited
from . import searchspace, trials
from .binding import bind_study, default_seed
from .liveness import worker_record
from .searchspace import Dimension
from .storage import storage_errors, storage_url
from .studystore import fail_dead_trials, open_study, require_optuna, retry_callback, tally

if TYPE_CHECKING:
    from optuna import Study
    from optuna.trial import Trial

__all__ = ["LOST", "run_worker", "sweep"]

logger = logging.getLogger(__name__)


def run_worker(
    study: Study,
    dims: Mapping[str, Dimension],
    fixed: Mapping[str, Any],
    data: DataSet,
    out: Path,
    *,
    n_trials: int,
    on_trial: Callable[[Any], None] | None = None,
    on_lost: Callable[[Any], None] | None = None,
    poll: float = 1.0,
) -> None:
    """Run trials in this process until ``study`` has ``n_trials`` finished ones: ``fixed``
    flags, ``data`` with a validation split, folders in ``out``, ``on_trial(FrozenTrial)`` after
    each, ``on_lost(FrozenTrial)`` (default: a logged warning) for a trial of this worker that
    another marked failed meanwhile, after which it goes on with the next. Raises
    KeyboardInterrupt (Ctrl-C, signals) and what a trial raised."""
    optuna = require_optuna()
    current: list[int] = []
    raised: list[BaseException] = []  # what the objective raised of its own
    gate = _Gate()

    def objective(trial: Trial) -> float:
        current[:] = [trial.number]
        try:
            return _objective(trial)
        except BaseException as exc:
            raised[:] = [exc]
            raise

    def _objective(trial: Trial) -> float:
        trial.set_user_attr("worker", worker_record(trial.number))
        values = {k: d.suggest(trial) for k, d in dims.items()}
        flags = searchspace.trial_flags(dims, values, fixed, data)
        folder = out / f"trial-{trial.number:04d}"
        trial.set_user_attr("folder", str(folder.resolve()))

        def report(epoch: int, accuracy: float) -> None:
            with gate.shut():
                trial.report(accuracy, epoch)
                prune = trial.should_prune()
            if prune:
                raise optuna.TrialPruned("pruned, its validation accuracy below the bar")

        with gate.opened():
            value, stopped = trials.train_trial(flags, data, folder, report)
        if stopped:
            trial.set_user_attr("stopped", stopped)
        return value

    callbacks = [lambda _, t: on_trial(t)] if on_trial is not None else None
    with signals.handled_by(gate.handle):
        while True:
            gate.check()
            fail_dead_trials(study)
            counts = tally(study)
            if counts["finished"] >= n_trials:
                return
            if counts["finished"] + counts["RUNNING"] >= n_trials:
                time.sleep(poll)  # the last trials run elsewhere: wait for them, or their failure
                continue
            try:
                study.optimize(objective, n_trials=1, callbacks=callbacks)
            except KeyboardInterrupt:  # Optuna marked the trial FAIL: queue its flags again
                for t in study.get_trials(deepcopy=False):
                    if t.number in current:
                        retry_callback(optuna)(study, t)
                raise
            except Exception as exc:
                lost = _lost(optuna, study, current, exc, raised)
                if lost is None:
                    raise
                (on_lost or _log_lost)(lost)
            current.clear()
            raised.clear()


def _lost(
    optuna: Any, study: Study, current: list[int], exc: Exception, raised: list[BaseException]
) -> Any:
    """The trial this worker ran when ``exc`` ended it, if another worker had marked it
    finished meanwhile (Optuna then refuses its report or its end: "Cannot tell a FAIL
    trial"), else None: ``exc`` is the trial's own failure, to raise."""
    finished = optuna.exceptions.UpdateFinishedTrialError
    if raised and raised[0] is exc and not isinstance(exc, finished):
        return None
    for t in study.get_trials(deepcopy=False):
        if t.number in current and t.state.is_finished():
            return t
    return None


def _log_lost(trial: Any) -> None:
    logger.warning(LOST, trial.number)


LOST = ("trial %d was marked failed by another worker while this one ran it (its heartbeat "
        "came late): its flags are queued again; going on with the next trial")  # fmt: skip
"""What a worker says of a trial it lost (``LOST % number``)."""


class _Gate:
    """Ctrl-C, SIGTERM, SIGHUP wait while the worker talks to the storage (there, one could
    leave a trial RUNNING with no owner on record, or half a transaction) and arrive while it
    trains (``opened``, not ``shut``) or at the next turn of its loop (``check``)."""

    open, pending = False, 0

    def handle(self, signum: int, frame: Any) -> None:
        self.pending = signum
        if self.open:
            self.check()

    def check(self) -> None:
        if self.pending:
            raise signals.Interrupt(self.pending)

    @contextlib.contextmanager
    def opened(self, now: bool = True) -> Iterator[None]:
        was, self.open = self.open, now
        try:
            self.check()  # one that came while it was shut arrives now
            yield
        finally:
            self.open = was
        if was:
            self.check()

    def shut(self) -> contextlib.AbstractContextManager[None]:
        return self.opened(False)


def sweep(
    space: Mapping[str, Any] | str | Path,
    X: Any,
    y: Any,
    *,
    validation_data: tuple[Any, Any] | None = None,
    test_data: tuple[Any, Any] | None = None,
    n_trials: int = 20,
    storage: str | None = None,
    study_name: str = "sweep",
    out: str | Path | None = None,
    pruner: Any = "median",
    threads: int | None = None,
    **flags: Any,
) -> Study:
    """Search the hyperparameters ``space`` names for a network trained on ``X``, ``y``.

    Parameters
    ----------
    space : dict like ``{"lr": {"log": [0.01, 10]}}``, or a SPACE.toml path (:mod:`.searchspace`)
    X : array, shape (n, d); y : array, shape (n,) labels or (n, k) targets
    validation_data, test_data : (X, y) pairs; validation default: a sixth of X, y drawn by seed
    n_trials : finished (complete or pruned) trials the study should have
    storage, study_name, out : SQLAlchemy URL (default SQLite ``out/study.db``), study name,
        folder of the trials' run folders (default ``sweeps/<study_name>``)
    pruner : "median", "hyperband", "none", or an Optuna pruner
    threads : BLAS threads while the trials train (``gpumlp sweep --threads``; default: BLAS's
        own), for sweeps run side by side on one machine
    **flags : fixed ``gpumlp train`` flags (``epochs=5``, ``hidden=[100]``); ``seed`` defaults
        to one derived from ``study_name``

    Returns the Optuna study (``best_trial``, ``user_attrs["test"]``). Raises TypeError for an
    unknown flag, ValueError naming a bad entry of ``space``, a bad flag, a study started with
    other flags or data, or a storage that fails (its file or URL and the database's reason).
    """
    unknown = sorted(set(flags) - set(FLAGS))
    if unknown:
        raise TypeError(f"sweep() got unknown flag {unknown[0]!r}; flags are gpumlp train's")
    check_int("n_trials", n_trials)
    if threads is not None:
        check_threads(threads, "threads")
    dims, source = searchspace.read_space(space)
    train = (np.asarray(X), np.asarray(y))
    data = DataSet("data", train, _pair(validation_data), _pair(test_data), "table")
    fixed = {"seed": default_seed(study_name)} | flags
    data = searchspace.hold_out(data, flags.get("val_split"), fixed["seed"])
    searchspace.check_space(dims, fixed, data, source)
    folder = Path("sweeps") / study_name if out is None else Path(out)
    url = storage_url(folder, storage)
    folder.mkdir(parents=True, exist_ok=True)
    with storage_errors(url):
        study = open_study(url, study_name, pruner=pruner, seed=fixed["seed"])
        bind_study(study, dims, fixed, data, source)
        with limited(threads, "threads"):
            run_worker(study, dims, fixed, data, folder, n_trials=n_trials)
            trials.evaluate_best(study, data, backend=fixed.get("backend", "auto"))
    return study


def _pair(split: tuple[Any, Any] | None) -> tuple[Any, Any] | None:
    return None if split is None else (np.asarray(split[0]), np.asarray(split[1]))

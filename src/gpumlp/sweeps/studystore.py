"""A sweep's study: Optuna (imported when called, never by ``import gpumlp``), the study opened
in its storage (where: :mod:`gpumlp.sweeps.storage`), its pruner, and the trials of workers
that died.

A trial whose worker died is marked FAIL and its flags queued as a new trial (at most
``MAX_RETRY`` times): after :data:`GRACE_BEATS` heartbeat intervals without a heartbeat (sent
every ``GPUMLP_HEARTBEAT`` s, default :data:`HEARTBEAT_INTERVAL`), or at once where its process
is known gone (:func:`gpumlp.sweeps.liveness.gone_here`: same host, boot and PID namespace).
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

from .liveness import gone_here
from .storage import database_reason, masked, storage_errors, where

if TYPE_CHECKING:
    from optuna import Study

__all__ = ["PRUNERS", "fail_dead_trials", "heartbeat_interval", "open_study",
           "require_optuna", "retry_callback", "tally"]  # fmt: skip

HEARTBEAT_INTERVAL, GRACE_BEATS, MAX_RETRY = 10, 6, 3
PRUNERS = ("median", "hyperband", "none")


def heartbeat_interval() -> int:
    """Seconds between a running trial's heartbeats: ``GPUMLP_HEARTBEAT`` (a positive whole
    number), else :data:`HEARTBEAT_INTERVAL`. Every worker of a study should use the same: a
    trial is failed after ``GRACE_BEATS`` of the checking worker's intervals without one. Raises
    ValueError naming the variable for another value."""
    text = os.environ.get("GPUMLP_HEARTBEAT", "").strip()
    if not text:
        return HEARTBEAT_INTERVAL
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"GPUMLP_HEARTBEAT={text!r}: expected whole seconds, 1 or more")
    return int(text)


def require_optuna() -> Any:
    """The ``optuna`` module; ImportError saying how to install it when it is missing."""
    try:
        import optuna
    except ImportError:
        raise ImportError("gpumlp sweep needs Optuna: pip install 'gpumlp[sweep]'") from None
    return optuna


def tally(study: Any) -> Counter[str]:
    """How many trials of ``study`` are in each state, by name (``COMPLETE``, ``PRUNED``,
    ``FAIL``, ``RUNNING``, ``WAITING``), and ``finished``: the complete and pruned ones, which
    a sweep's number of trials counts."""
    counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
    counts["finished"] = counts["COMPLETE"] + counts["PRUNED"]
    return counts


def open_study(url: str, name: str, *, pruner: Any = "median", seed: int | None = None) -> Study:
    """Create the study ``name`` in the storage ``url``, or load it: maximising, TPE whose
    draws for each trial are seeded by ``seed`` and the trial's number
    (:mod:`gpumlp.sweeps.sampling`), ``pruner`` one of :data:`PRUNERS` or an Optuna pruner.
    Raises ImportError (no Optuna, no database driver), ValueError naming ``--storage`` when
    it cannot be opened, or naming ``GPUMLP_HEARTBEAT`` when that is no interval."""
    optuna = require_optuna()
    import sqlalchemy  # Optuna's own dependency

    from .sampling import TrialSeededTPE  # imports Optuna

    interval = heartbeat_interval()

    if isinstance(pruner, str):
        if pruner not in PRUNERS:
            raise ValueError(f"pruner must be one of {', '.join(PRUNERS)}, got {pruner!r}")
        # The median pruner spares each trial's first epoch: slow starters catch up after it.
        pruners = optuna.pruners
        pruner = {"median": lambda: pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
                  "hyperband": lambda: pruners.HyperbandPruner(min_resource=1),
                  "none": pruners.NopPruner}[pruner]()  # fmt: skip
    retry = retry_callback(optuna)
    params = inspect.signature(optuna.storages.RDBStorage).parameters
    callback = "heartbeat_stale_trial_callback"  # Optuna 4.9 renamed failed_trial_callback
    callback = callback if callback in params else "failed_trial_callback"
    sqlite = url.startswith("sqlite")
    # SQLite: wait for the write lock rather than fail when workers write at once, and take it
    # at BEGIN (below), not at the first write as pysqlite would, after the read that decided
    # it: else two workers can both take one queued trial.
    engine = {"connect_args": {"timeout": 60, "isolation_level": None}} if sqlite else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna calls heartbeats and constant_liar experimental
        for attempt in range(3):
            try:
                storage = optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine,
                    heartbeat_interval=interval,
                    grace_period=GRACE_BEATS * interval,
                    **{callback: retry},
                )
                if sqlite:
                    begin = lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE")  # noqa: E731
                    sqlalchemy.event.listen(storage.engine, "begin", begin)
                break
            except ImportError as exc:
                why = f"{exc.__cause__ or exc}; PostgreSQL's: pip install 'psycopg[binary]'"
                raise ImportError(f"--storage {masked(url)} needs a driver: {why}") from None
            except Exception as exc:
                if not type(exc).__module__.startswith("sqlalchemy"):
                    raise
                if attempt < 2:  # workers starting at once race to make the tables: try again
                    time.sleep(1 + attempt)
                    continue
                reason = database_reason(exc)
                raise ValueError(f"{where(url)}: cannot open it: {reason}") from None
        sampler = TrialSeededTPE(seed)
        with storage_errors(url):
            study: Study = optuna.create_study(
                storage=storage,
                study_name=name,
                direction="maximize",
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
    return study


def retry_callback(optuna: Any) -> Any:
    """Optuna's callback that queues a failed trial's flags again, up to MAX_RETRY times."""
    storages = optuna.storages  # Optuna 4.9 renamed RetryFailedTrialCallback
    kind = getattr(storages, "RetryHeartbeatStaleTrialCallback", storages.RetryFailedTrialCallback)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental"
        return kind(max_retry=MAX_RETRY)


def fail_dead_trials(study: Study) -> None:
    """Mark FAIL the running trials whose worker is gone (the module's rule: known gone here,
    or silent for the grace period); queue their flags again."""
    optuna = require_optuna()
    running = optuna.trial.TrialState.RUNNING
    for trial in study.get_trials(deepcopy=False, states=(running,)):
        worker = trial.user_attrs.get("worker")
        # A retry copies its failed trial's attributes: only the trial's own "worker" counts.
        if not (isinstance(worker, dict) and worker.get("trial") == trial.number):
            continue
        if not gone_here(worker):
            continue
        try:
            frozen = study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.OptunaError):
            continue  # another worker failed it first, and queued the retry
        retry_callback(optuna)(study, frozen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in Optuna
        optuna.storages.fail_stale_trials(study)  # the heartbeat rule, for every worker

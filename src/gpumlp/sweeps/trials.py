"""One trial of a sweep, trained into its run folder, and the best trial scored on the test
split once (no Optuna here: a study is anything with ``get_trials``/``best_trial``/user
attributes). A trial stopped early (pruned, diverged, interrupted) is left as a stopped run:
its history says why, and its model is the last checkpointed epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import signals
from ..data.sources import DataSet
from ..files.checkpoint import read_checkpoint
from ..files.modelfile import expected_arrays
from ..history import History
from ..loader import load, network_from
from ..runs.rundir import plan_folder, run_folder
from ..runs.runner import execute, plan_run
from .liveness import HOST
from .studystore import tally

__all__ = ["evaluate_best", "train_trial"]


def train_trial(
    flags: dict[str, Any], data: DataSet, folder: Path, report: Callable[[int, float], None]
) -> tuple[float, str | None]:
    """Train ``flags`` (:func:`trial_flags`) into the new run folder ``folder``; ``report(epoch,
    validation_accuracy)`` after each epoch may raise to stop it (Optuna's TrialPruned), which
    leaves the folder as a run stopped there (history, checkpoint, model) and propagates.
    Returns the validation accuracy of the saved model and why it stopped early (or None)."""
    plan = plan_run(flags, data)
    planned = plan_folder(str(folder), None, overwrite=False)
    records: list[dict[str, Any]] = []

    def on_epoch(record: dict[str, Any]) -> None:
        records.append(record)
        History(records, seed=flags["seed"], scored="validation").save(folder)  # live progress
        report(record["epoch"], record["val_accuracy"])

    with run_folder(planned) as run:
        try:
            net, history, diverged = execute(plan, run, on_epoch=on_epoch)
        except Exception as exc:
            if records and not isinstance(exc, OSError):  # an OSError would strike again
                _stopped(
                    run, records, flags["seed"], f"stopped after epoch {len(records) - 1}: {exc}"
                )
            raise
    assert data.validation is not None
    accuracy = float(net.evaluate(*data.validation)["accuracy"])
    return accuracy, str(diverged) if diverged is not None else history.stop_reason


def _stopped(run: Path, records: list[dict[str, Any]], seed: int, reason: str) -> None:
    """Leave the folder of a trial stopped after ``records`` as a stopped run: the history
    says why, and the model is the checkpoint's when the checkpoint holds the last epoch."""
    checkpoint = run / "checkpoint.npz"
    with signals.deferred():
        History(records, reason, seed=seed, scored="validation").save(run)
        if not checkpoint.is_file():
            return
        meta, arrays = read_checkpoint(
            checkpoint, lambda m: expected_arrays(m, checkpoint, training=True)
        )
        if meta.get("epoch") == len(records):
            network_from(meta, arrays, checkpoint, backend="numpy").save(run / "model.npz")


def evaluate_best(study: Any, data: DataSet, *, backend: str = "auto") -> dict[str, Any] | None:
    """Score the best trial's model on the test split once, kept as the study's user attribute
    ``"test"``: ``{"trial", "accuracy", "cost", "n"}``. None without a test split, a complete
    trial, or the best trial's model on this machine."""
    if data.test is None or not tally(study)["COMPLETE"]:
        return None
    best = study.best_trial
    stored = study.user_attrs.get("test")
    if isinstance(stored, dict) and stored.get("trial") == best.number:
        return stored
    model = Path(str(best.user_attrs.get("folder"))) / "model.npz"
    if best.user_attrs.get("worker", {}).get("host") != HOST:
        return None
    if not model.is_file():
        return None
    test: dict[str, Any] = {"trial": best.number} | load(model, backend=backend).evaluate(
        *data.test
    )
    study.set_user_attr("test", test)
    return test

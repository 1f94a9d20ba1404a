"""The defaults of a table: what ``gpumlp train --data FILE`` (a CSV, a table ``.npz``, an
``X.npy``) and the scikit-learn estimators (:mod:`gpumlp.sklearn`) train with where no flag or
parameter says otherwise. MNIST keeps the book's defaults.

The book's defaults (sigmoid units, quadratic cost, N(0, 1) weights, η = 3, batch 10, the
inputs as given) were chosen for MNIST, whose 784 inputs all lie in [0, 1]. On tables they
stall: iris stopped at 40% and wine stayed at chance, its columns spread from 0.1 to 1,680.
The rules below were chosen by measurement, on iris, wine, breast cancer and digits (80/20
stratified splits) against ``make_pipeline(StandardScaler(), MLPClassifier())``; the table of
accuracies and times is ``docs/results.md`` ("Tables"), made by ``scripts/tables_vs_sklearn.py``.

Each rule takes the loaded data (:class:`DataShape`) and gives a setting's value for a table;
:data:`gpumlp.settings.SETTINGS` names them as its entries' ``table_default``, so the command
line, a sweep and the estimators read the same rule. This module imports nothing of gpumlp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["RULES", "DataShape", "Rule", "classifies"]


class DataShape(Protocol):
    """What a data-dependent default may read of the data (a loaded ``DataSet``, or the
    estimators' view of ``X`` and ``y``)."""

    @property
    def kind(self) -> str: ...  # "images" or "table"

    @property
    def task(self) -> str: ...  # "classification" or "regression"

    @property
    def validation(self) -> Any: ...  # the held-out split (X, y), or None

    @property
    def n_features(self) -> int: ...

    @property
    def n_outputs(self) -> int: ...


@dataclass(frozen=True)
class Rule:
    """One setting's default for tables: ``rule(data)`` gives it for the loaded data; ``shown``
    is how ``--help`` says it, ``why`` why it was chosen."""

    of: Callable[[DataShape], Any]
    shown: str
    why: str

    def __call__(self, data: DataShape) -> Any:
        return self.of(data)

    @classmethod
    def constant(cls, value: Any, why: str) -> Rule:
        """The same ``value`` for every table."""
        shown = "on" if value is True else str(value)
        return cls(lambda data: value, shown, why)


def classifies(data: DataShape) -> bool:
    """True when the outputs are classes (the network scores each class), False for
    regression (the outputs are the targets)."""
    return data.task != "regression"


def _hidden(data: DataShape) -> list[int]:
    return [max(32, min(256, 2 * (data.n_features + data.n_outputs)))]


RULES: dict[str, Rule] = {
    "task": Rule(
        lambda data: data.task,
        "told by the labels",
        "The task the labels tell (gpumlp.data.task): numbers that are not all integers are "
        "values to predict (regression), integers and names are classes; integers of many "
        "distinct values are refused until --task says which.",
    ),
    "hidden": Rule(
        _hidden,
        "2·(inputs + outputs), in [32, 256]",
        "One hidden layer of 2·(inputs + outputs) units, at least 32 and at most 256 (iris: "
        "32, breast cancer: 64, digits: 148): on the four data sets it scored above "
        "scikit-learn's fixed 100 (97.4% against 97.0% over ten seeds, with early stopping).",
    ),
    "activation": Rule.constant(
        "relu",
        "ReLU hidden units: no saturation on the positive side, so standardized inputs "
        "train quickly whatever their count (sigmoid units with the quadratic cost stalled iris).",
    ),
    "output_activation": Rule(
        lambda data: "softmax" if classifies(data) else "identity",
        "softmax (identity for regression)",
        "Softmax for classes (one probability per class), identity for "
        "regression (any real value).",
    ),
    "cost": Rule(
        lambda data: "log_likelihood" if classifies(data) else "quadratic",
        "log_likelihood (quadratic for regression)",
        "Log-likelihood for classes, softmax's own cost, whose "
        "δ^L = a − y never saturates (the quadratic cost with sigmoid outputs learns slowly "
        "once wrong, the book's chapter 3); quadratic for regression (least squares).",
    ),
    "init": Rule.constant(
        "he",
        "He initialisation, N(0, 2/n_in) weights and zero biases, the one made for ReLU "
        "(the book's N(0, 1) saturates units fed by many inputs).",
    ),
    "optimizer": Rule.constant(
        "adam",
        "Adam: one learning rate that works across data sets and widths (plain SGD's "
        "η must be tuned to each).",
    ),
    "lr": Rule.constant(
        3e-3,
        "η = 0.003 with batches of 128: batches of 32 at η = 0.001 (Adam's own), 64 at 0.002, "
        "128 at 0.003 and 200 at 0.004 scored alike (97.8% to 98.0% over 13 seeds), while 64 "
        "at 0.001 left iris short (94.1%): fewer steps need a larger η.",
    ),
    "batch_size": Rule.constant(
        128,
        "Batches of 128: a quarter of the steps of batches of 32 at the same accuracy (with η "
        "scaled to match), so the fit is quicker where each step's overhead dominates; iris "
        "and wine train as one batch.",
    ),
    "epochs": Rule.constant(
        200,
        "At most 200 epochs, scikit-learn's max_iter; with a validation split, early "
        "stopping ends most runs well before.",
    ),
    "l2": Rule(
        lambda data: 1.0 if classifies(data) else 3.0,
        "1 (3 for regression)",
        "The book's L2 penalty (λ/n)·W with λ = 1: without it the accuracy fell by half a "
        "point on average (most on iris and digits); λ = 3 scored no better. For regression "
        "λ = 3: over diabetes, Friedman #1 (500 and 2,000 rows), a 20-feature linear set and "
        "linnerud (80/20 splits, 3 seeds) it raised R² on every one against λ = 1 (diabetes "
        "0.31 to 0.35), while λ = 10 and 30 lowered it on Friedman #1.",
    ),
    "patience": Rule(
        lambda data: 10 if data.validation is not None else None,
        "10 with a validation split",
        "Early stopping after 10 epochs without a lower validation cost, the best epoch's "
        "weights kept, when there is a validation split (--val-split, or the file's own); none "
        "without one: the test split never chooses the weights.",
    ),
    "stop_on": Rule.constant(
        "val_cost",
        "Early stopping watches the validation cost: on a small validation split "
        "the accuracy moves in steps of one row and stopped breast cancer at its first epoch "
        "(issue 29), "
        "while the cost still says whether the network is getting better.",
    ),
    "standardize": Rule.constant(
        True,
        "Inputs standardized by the training split's mean and standard deviation (kept "
        "in the model): table columns come in any units (wine's from 0.1 to 1,680).",
    ),
    "monitor_set": Rule.constant(
        "validation",
        "The validation split is scored after each epoch, the test split only "
        "when there is no validation split.",
    ),
}
"""The rule of each setting whose default differs for tables, by setting name."""

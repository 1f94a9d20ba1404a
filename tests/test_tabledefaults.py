"""gpumlp.tabledefaults: the defaults of a table, read through the settings' table (MNIST keeps
the book's); that a table trains with them is tested through ``gpumlp train``
(tests/test_cli_train.py) and measured in docs/results.md ("Tables")."""

from __future__ import annotations

import dataclasses

import numpy as np

from gpumlp import settings
from gpumlp.data.sources import DataSet
from gpumlp.tabledefaults import RULES


def _table_data() -> DataSet:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 3)).astype(np.float32), np.arange(40) % 2
    return DataSet("t", (X[:32], y[:32]), (X[32:], y[32:]), None, "table")


def test_mnist_keeps_the_books_defaults_and_a_table_takes_the_table_rules():
    images = dataclasses.replace(_table_data(), kind="images")
    assert settings.defaults(images) == settings.defaults()
    table = settings.defaults(_table_data())
    assert table | {"hidden": None} == settings.defaults() | {
        "hidden": None, "task": "classification", "activation": "relu",
        "output_activation": "softmax",
        "cost": "log_likelihood", "init": "he", "lr": 3e-3, "batch_size": 128, "epochs": 200,
        "optimizer": "adam", "l2": 1.0, "patience": 10, "stop_on": "val_cost",
        "monitor_set": "validation", "standardize": True}  # fmt: skip
    assert table["hidden"] == [32]  # 2·(3 inputs + 2 classes), at least 32
    wide = DataSet("w", (np.zeros((4, 200)), np.arange(4) % 2), None, None, "table")
    assert settings.defaults(wide)["hidden"] == [256]  # 2·(200 + 2), at most 256
    assert settings.defaults(wide)["patience"] is None  # no validation split: no early stop
    regression = settings.defaults(dataclasses.replace(wide, task="regression"))
    assert (regression["task"], regression["output_activation"], regression["cost"],
            regression["l2"], regression["standardize"]) == (
        "regression", "identity", "quadratic", 3.0, True)  # fmt: skip


def test_every_rule_is_an_entrys_and_says_why():
    tabled = {s.name: s.table_default for s in settings.SETTINGS.values() if s.table_default}
    assert tabled == RULES
    for name, rule in RULES.items():
        assert rule.why.endswith(".") and len(rule.why) > 40, name
        assert rule.shown, name

"""gpumlp.runs.advice: when a table's columns differ in scale by orders of magnitude, and when
training has stalled (its cost flat at about the cost of one output for every row)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpumlp.config import ModelSpec
from gpumlp.runs.advice import STALL_EPOCHS, Stall, constant_cost, scale_advice


def test_columns_apart_by_orders_of_magnitude_are_named():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4)) * np.array([1.0, 2.0, 0.5, 3.0])
    assert scale_advice(X) is None  # within a factor of 100 of each other
    X[:, 3] *= 1000.0
    X[:, 1] = 0.0  # a column of zeros has no scale to compare
    text = scale_advice(X)
    assert text is not None
    assert "column 3 reaches" in text and "column 2 only" in text and "--standardize" in text
    assert scale_advice(np.ones((5, 1))) is None


def test_the_cost_of_one_output_for_every_row():
    y = np.array([0, 0, 0, 1])  # frequencies 3/4, 1/4
    softmax = ModelSpec.build([2, 2], output_activation="softmax", cost="log_likelihood",
                              backend="numpy")  # fmt: skip
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert constant_cost(softmax, y) == pytest.approx(entropy)
    quadratic = ModelSpec.build([2, 2], backend="numpy")
    assert constant_cost(quadratic, y) == pytest.approx(0.5 * 2 * 0.75 * 0.25)
    targets = np.array([[1.0], [3.0]])  # the mean, 2, is off by 1 from each: ½·1²
    assert constant_cost(ModelSpec.build([2, 1], backend="numpy"), targets) == 0.5


def _see(stall: Stall, costs: list[float]) -> list[str | None]:
    return [stall.see({"train_cost": c}) for c in costs]


def test_a_stall_is_said_once_and_learning_is_not():
    flat = [0.40, 0.34, 0.36, 0.35, 0.37, 0.34, 0.36, 0.35]  # never below 0.34 after epoch 1
    said = _see(Stall(0.33), flat)
    assert said[: 1 + STALL_EPOCHS] == [None] * (1 + STALL_EPOCHS)
    assert said[1 + STALL_EPOCHS] is not None and said[2 + STALL_EPOCHS :] == [None]
    assert "has not fallen for 5 epochs and stays at 0.34 or more" in said[1 + STALL_EPOCHS]
    assert _see(Stall(0.33), [0.3 * 0.9**k for k in range(20)]) == [None] * 20  # falling
    assert _see(Stall(0.33), [0.02] * 20) == [None] * 20  # flat, far below the baseline
    assert Stall(0.33).see({"train_cost": None}) is None  # not monitored

"""Learning-rate schedules and early stopping: transitions at chosen epochs, the book's plateau
rule on a scripted accuracy sequence, and early stopping's weight restore through ``fit``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpumlp
from gpumlp.schedules import SCHEDULES, EarlyStopping, Schedule, make_schedule
from helpers.nets import host


def test_constant():
    s = Schedule("constant", 0.3, epochs=5)
    assert [s.lr_for(e) for e in range(5)] == [0.3] * 5
    assert s.observe(0, None) is None  # needs no validation data
    assert s.observe(1, 0.1) is None
    assert s.lr_for(2) == 0.3


def test_step():
    s = Schedule("step", 1.0, epochs=10, step_size=3, gamma=0.1)
    lrs = [s.lr_for(e) for e in range(8)]
    assert lrs[:3] == [1.0] * 3
    assert lrs[3:6] == pytest.approx([0.1] * 3, rel=1e-15)
    assert lrs[6:] == pytest.approx([0.01] * 2, rel=1e-15)


def test_cosine():
    # 0.5·η·(1 + cos(π e / E)) with η = 2, E = 4: 2, 1 + √½, 1, 1 − √½, (0 after the last)
    s = Schedule("cosine", 2.0, epochs=4)
    r = math.sqrt(0.5)
    assert [s.lr_for(e) for e in range(5)] == pytest.approx([2, 1 + r, 1, 1 - r, 0], abs=1e-15)


def test_unknown_schedule():
    with pytest.raises(ValueError, match=r"schedule='linear'.*expected one of"):
        Schedule("linear", 1.0, 3)
    assert set(SCHEDULES) == {"constant", "step", "plateau", "cosine"}


# The book's rule with patience n = 2 on a scripted validation accuracy, lr = 1.
# epoch: accuracy  -> what happens
#   0: 0.50 best;  1: 0.60 best;  2: 0.60 (equal is no improvement, 1);  3: 0.59 (2) -> halve: 1/2
#   4: 0.61 best;  5, 6: lower -> halve at 6: 1/4;  7, 8 -> 1/8 at 8;  9, 10 -> 1/16 at 10
#  11, 12 -> 1/32 at 12;  13, 14 -> 1/64 at 14;  15, 16 -> 1/128 at 16: stop
PLATEAU_SCRIPT = [0.50, 0.60, 0.60, 0.59, 0.61] + [0.1] * 12
PLATEAU_LR_AFTER = {3: 1 / 2, 6: 1 / 4, 8: 1 / 8, 10: 1 / 16, 12: 1 / 32, 14: 1 / 64, 16: 1 / 128}


def test_plateau_halves_and_stops_at_the_scripted_epochs():
    s = Schedule("plateau", 1.0, epochs=100, patience=2)
    lr = 1.0
    assert s.lr_for(0) == 1.0
    for epoch, acc in enumerate(PLATEAU_SCRIPT):
        stop = s.observe(epoch, acc)
        lr = PLATEAU_LR_AFTER.get(epoch, lr)
        assert s.lr_for(epoch + 1) == lr, f"after epoch {epoch}"
        if epoch < 16:
            assert stop is None, f"stopped early at epoch {epoch}"
    assert stop is not None and "lr/128" in stop
    assert s.lr_for(17) == 1 / 128


def test_plateau_improvement_resets_the_count():
    s = Schedule("plateau", 1.0, epochs=100, patience=3)
    for epoch, acc in enumerate([0.5, 0.4, 0.4, 0.6, 0.5, 0.5, 0.7, 0.1, 0.1]):
        assert s.observe(epoch, acc) is None
    assert s.lr_for(9) == 1.0  # never 3 epochs in a row without a new best
    s.observe(9, 0.1)
    assert s.lr_for(10) == 0.5


def test_plateau_state_resumes_exactly():
    a = Schedule("plateau", 1.0, epochs=100, patience=2)
    for epoch, acc in enumerate(PLATEAU_SCRIPT[:7]):
        a.observe(epoch, acc)
    b = Schedule("plateau", 1.0, epochs=100, patience=2)
    b.load_state(a.state())
    for epoch, acc in enumerate(PLATEAU_SCRIPT[7:], start=7):
        assert a.observe(epoch, acc) == b.observe(epoch, acc)
        assert a.lr_for(epoch + 1) == b.lr_for(epoch + 1)


def test_plateau_needs_validation_accuracy():
    with pytest.raises(ValueError, match=r"validation_data"):
        Schedule("plateau", 1.0, epochs=3).observe(0, None)


def test_make_schedule_patience():
    assert make_schedule("plateau", lr=1.0, epochs=3, patience=4).patience == 4
    assert make_schedule("plateau", lr=1.0, epochs=3).patience == 10  # the book's n = 10


def test_early_stopping_scripted():
    # patience 3: best 0.7 at epoch 1; epochs 2, 3, 4 are no better (0.7 ties) -> stop after 4.
    e = EarlyStopping(patience=3)
    results = [e.observe(epoch, acc) for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.7, 0.65])]
    assert [improved for improved, _ in results] == [True, True, False, False, False]
    assert [stop is None for _, stop in results] == [True, True, True, True, False]
    assert "best 0.7000 at epoch 1" in results[-1][1]
    assert (e.best, e.best_epoch) == (0.7, 1)
    f = EarlyStopping(patience=3)
    f.load_state(e.state())
    assert f.state() == e.state()
    with pytest.raises(ValueError, match=r"validation_data"):
        EarlyStopping(2).observe(0, None)


# -- through fit --------------------------------------------------------------------------------


@pytest.fixture
def noisy_validation():
    """Validation data with random labels: its accuracy wanders, so plateaus happen."""
    rng = np.random.default_rng(7)
    return rng.standard_normal((60, 4)), rng.integers(0, 3, 60)


def test_fit_follows_the_cosine_schedule(blobs):
    X, y = blobs
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    history = net.fit(X, y, epochs=4, batch_size=30, lr=2.0, schedule="cosine")
    r = math.sqrt(0.5)
    assert history.column("lr") == pytest.approx([2, 1 + r, 1, 1 - r], abs=1e-15)


def test_fit_plateau_replays_the_rule(blobs, noisy_validation):
    X, y = blobs
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    history = net.fit(
        X,
        y,
        epochs=200,
        batch_size=10,
        lr=1.0,
        schedule="plateau",
        patience=2,
        validation_data=noisy_validation,
    )
    assert history.stop_reason is not None and "lr/128" in history.stop_reason
    assert len(history) < 200
    # Replaying the recorded accuracies through a fresh schedule gives the recorded rates.
    s = Schedule("plateau", 1.0, epochs=200, patience=2)
    expected = []
    for r in history:
        expected.append(s.lr_for(r["epoch"]))
        s.observe(r["epoch"], r["val_accuracy"])
    assert history.column("lr") == expected
    assert sorted(set(expected), reverse=True) == [2.0**-k for k in range(7)]


def test_fit_early_stopping_restores_the_best_epoch(blobs, noisy_validation):
    X, y = blobs
    Xv, yv = noisy_validation
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    seen: dict[int, list[np.ndarray]] = {}

    def copy_weights(record):
        seen[record["epoch"]] = [host(t).copy() for t in net.params.arrays()]

    history = net.fit(
        X,
        y,
        epochs=100,
        batch_size=10,
        lr=1.0,
        patience=3,
        validation_data=(Xv, yv),
        on_epoch=copy_weights,
    )
    accs = history.column("val_accuracy")
    best = int(np.argmax(accs))  # the first epoch with the highest accuracy
    assert history.stop_reason is not None and "no improvement" in history.stop_reason
    assert len(history) == best + 3 + 1  # stopped after 3 epochs without a new best
    assert best < len(history) - 1  # so the last epoch's weights are not the best ones
    for got, want in zip(net.params.arrays(), seen[best], strict=True):
        assert np.array_equal(host(got), want)
    assert not np.array_equal(host(net.params.arrays()[0]), seen[len(history) - 1][0])
    assert net.evaluate(Xv, yv)["accuracy"] == accs[best]


@pytest.mark.parametrize("kw", [{"schedule": "plateau"}, {"patience": 2}])
def test_fit_watchers_need_validation_accuracy(blobs, kw):
    X, y = blobs
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    with pytest.raises(ValueError, match=r"validation_data"):
        net.fit(X, y, epochs=2, batch_size=10, lr=1.0, **kw)
    before = host(net.weights[0]).copy()
    with pytest.raises(ValueError, match=r"val_accuracy"):
        net.fit(X, y, epochs=2, batch_size=10, lr=1.0, validation_data=(X, y), monitor=(), **kw)
    assert np.array_equal(host(net.weights[0]), before)  # refused up front, not after an epoch


# -- watching the validation cost (stop_on="val_cost") ---------------------------------------------


def test_early_stopping_on_the_cost_watches_it_fall():
    # patience 2: best 0.40 at epoch 2 (lower is better); 0.40 ties and 0.45 do not improve.
    e = EarlyStopping(patience=2, watch="val_cost")
    results = [e.observe(epoch, c) for epoch, c in enumerate([0.9, 0.5, 0.4, 0.4, 0.45])]
    assert [improved for improved, _ in results] == [True, True, True, False, False]
    assert results[-1][1] == (
        "no improvement in validation cost for 2 epochs (best 0.4000 at epoch 2)"
    )
    with pytest.raises(ValueError, match=r"validation_data and 'val_cost' in monitor"):
        EarlyStopping(2, "val_cost").observe(0, None)
    with pytest.raises(ValueError, match=r"stop_on='val_loss' is not watched"):
        EarlyStopping(2, "val_loss")


def test_plateau_on_the_cost_halves_when_it_stops_falling():
    s = Schedule("plateau", 1.0, epochs=100, patience=2, watch="val_cost")
    for epoch, cost in enumerate([0.9, 0.5, 0.6, 0.7]):
        s.observe(epoch, cost)
    assert s.lr_for(4) == 0.5  # two epochs above the best cost, 0.5
    s.observe(4, 0.49)
    s.observe(5, 0.6)
    assert s.lr_for(6) == 0.5  # a new best reset the count


def test_a_watch_resumed_on_another_value_starts_afresh():
    accuracy = EarlyStopping(patience=2)  # a checkpoint written before stop_on existed
    accuracy.observe(0, 0.9)
    old = {k: v for k, v in accuracy.state().items() if k != "watch"}
    cost = EarlyStopping(patience=2, watch="val_cost")
    cost.load_state(old)  # a best accuracy of 0.9 is no bound on a cost
    assert cost.observe(1, 0.3) == (True, None)
    same = EarlyStopping(patience=2)
    same.load_state(old)
    assert same.state() == accuracy.state()
    plateau = Schedule("plateau", 1.0, epochs=10, patience=1, watch="val_cost")
    plateau.load_state(Schedule("plateau", 1.0, epochs=10).state() | {"best": 0.9})
    plateau.observe(0, 0.3)
    assert plateau.lr_for(1) == 1.0  # 0.3 is the first cost it has seen: a best, no halving


def test_fit_stops_on_the_validation_cost_and_keeps_its_best_epoch(blobs, noisy_validation):
    X, y = blobs
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    history = net.fit(X, y, epochs=100, batch_size=10, lr=1.0, patience=3, stop_on="val_cost",
                      validation_data=noisy_validation)  # fmt: skip
    costs = history.column("val_cost")
    best = int(np.argmin(costs))
    assert history.stop_reason.startswith("no improvement in validation cost for 3 epochs")
    assert len(history) == best + 3 + 1
    assert net.evaluate(*noisy_validation)["cost"] == pytest.approx(costs[best], rel=1e-6)
    with pytest.raises(ValueError, match=r"'val_cost' in monitor"):
        net.fit(X, y, patience=3, stop_on="val_cost", validation_data=noisy_validation,
                monitor=("val_accuracy",))  # fmt: skip

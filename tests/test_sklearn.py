"""gpumlp.sklearn: the estimators pass scikit-learn's own checks (``parametrize_with_checks``),
work in its tools (``Pipeline``, ``GridSearchCV``, ``cross_val_score``), encode any labels
themselves and answer with them, take the same table defaults as ``gpumlp train``, keep the
optimizer's state across ``partial_fit`` calls, and give regression predictions in the targets'
units; ``import gpumlp`` never imports scikit-learn."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from helpers.cli import run_python

sklearn = pytest.importorskip(
    "sklearn", minversion="1.6", reason="gpumlp.sklearn needs scikit-learn >= 1.6"
)

from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from gpumlp import settings  # noqa: E402
from gpumlp.data.sources import DataSet  # noqa: E402
from gpumlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from helpers.nets import host  # noqa: E402


@parametrize_with_checks([MLPClassifier(backend="numpy"), MLPRegressor(backend="numpy")])
def test_scikit_learns_checks(estimator, check):
    check(estimator)


def test_import_gpumlp_does_not_import_scikit_learn():
    code = "import sys, gpumlp, gpumlp.cli; print('sklearn' in sys.modules)"
    assert run_python(code).strip() == "False"


@pytest.fixture
def three():
    """Three separable classes of 120 rows, their columns 1000 apart in scale."""
    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    X = (np.eye(3)[y] * 3 + rng.standard_normal((120, 3))) * np.array([1000.0, 1.0, 0.001])
    return X, y


@pytest.mark.parametrize(
    "labels", [["setosa", "versicolor", "virginica"], [1, 2, 3], [-1, 0, 7], [3, 1, 2]]
)
def test_labels_of_any_kind_are_the_classes_and_the_answers(three, labels):
    X, y = three
    named = np.array(labels)[y]
    clf = MLPClassifier(backend="numpy", random_state=0).fit(X, named)
    assert list(clf.classes_) == sorted(labels)
    predicted = clf.predict(X)
    assert predicted.dtype == named.dtype and set(predicted) <= set(labels)
    assert np.mean(predicted == named) >= 0.95
    proba = clf.predict_proba(X)
    assert type(proba) is np.ndarray and proba.dtype == np.float64 and proba.shape == (120, 3)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(clf.classes_[np.argmax(proba, axis=1)], predicted)
    with pytest.raises(ValueError, match="not classes of this classifier"):
        clf.partial_fit(X[:3], np.array(["other"] * 3, dtype=object))  # another type too


def test_the_estimators_take_the_tables_defaults_of_the_command_line(three):
    X, y = three
    clf = MLPClassifier(backend="numpy", random_state=0, validation_fraction=0.25).fit(X, y)
    data = DataSet("t", (X[:90], y[:90]), (X[90:], y[90:]), None, "table")
    flags = settings.defaults(data)
    net = clf.network_
    assert net.sizes == [3, *flags["hidden"], 3]
    got = (net.activation, net.output_activation, net.cost.name, net.init, net.standardized)
    assert got == tuple(flags[k] for k in ("activation", "output_activation", "cost", "init",
                                           "standardize"))  # fmt: skip
    stop = clf.history_.stop_reason
    assert stop is None or stop.startswith(f"no improvement in validation cost for "
                                           f"{flags['patience']} epochs")  # fmt: skip
    reg = MLPRegressor(backend="numpy", random_state=0).fit(X, X[:, 1])
    table = dataclasses.replace(data, task="regression")
    assert reg.network_.output_activation == settings.defaults(table)["output_activation"]
    assert reg.network_.cost.name == settings.defaults(table)["cost"] == "quadratic"


def test_pipeline_grid_search_and_cross_val_score(three):
    X, y = three
    pipe = make_pipeline(StandardScaler(), MLPClassifier(backend="numpy", random_state=0))
    assert pipe.fit(X, y).score(X, y) >= 0.95
    grid = GridSearchCV(MLPClassifier(backend="numpy", random_state=0, epochs=30),
                        {"hidden": [(4,), (16,)], "lr": [0.003, 0.03]}, cv=3)  # fmt: skip
    grid.fit(X, y)
    assert set(grid.best_params_) == {"hidden", "lr"} and grid.best_score_ >= 0.9
    assert grid.best_estimator_.network_.sizes[1] == grid.best_params_["hidden"][0]
    scores = cross_val_score(MLPRegressor(backend="numpy", random_state=0), X, X[:, 0] / 1000.0,
                             cv=3)  # fmt: skip
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_partial_fit_goes_on_where_it_stopped(three):
    X, y = three
    kw = {"backend": "numpy", "random_state": 0, "validation_fraction": 0.0, "epochs": 3}
    whole = MLPClassifier(**kw).fit(X, y)
    steps = MLPClassifier(**kw)
    for _ in range(3):
        steps.partial_fit(X, y, classes=[0, 1, 2])
    assert steps.n_iter_ == 3
    for a, b in zip(whole.network_.params.arrays(), steps.network_.params.arrays(), strict=True):
        assert np.array_equal(host(a), host(b))  # Adam's moments kept from call to call
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier(backend="numpy").partial_fit(X, y)
    reg = MLPRegressor(**kw)
    for _ in range(2):
        reg.partial_fit(X, X[:, :2])
    assert reg.predict(X).shape == (120, 2) and reg.n_iter_ == 2


def test_regression_answers_in_the_targets_units(three):
    X, _ = three
    y = 5000.0 + 2000.0 * X[:, 0] / 1000.0  # targets in the thousands
    reg = MLPRegressor(backend="numpy", random_state=0).fit(X, y)
    assert reg.target_scaling_ is not None
    got = reg.predict(X)
    assert got.shape == (120,) and got.dtype == np.float64
    assert reg.score(X, y) > 0.95
    assert abs(np.mean(got) - np.mean(y)) < 0.05 * np.std(y)
    two = np.stack([y, -y / 1000.0], axis=1)
    both = MLPRegressor(backend="numpy", random_state=0).fit(X, two)
    assert both.predict(X).shape == (120, 2) and both.score(X, two) > 0.9
    again = pickle.loads(pickle.dumps(reg))
    assert np.array_equal(again.predict(X), got)


def test_early_stopping_without_a_validation_split_is_refused(three):
    X, y = three
    with pytest.raises(ValueError, match="set validation_fraction above 0"):
        MLPClassifier(backend="numpy", patience=3, validation_fraction=0.0).fit(X, y)
    one = MLPClassifier(backend="numpy")
    with pytest.raises(ValueError, match=r"y holds one class \(0.0\): a classifier needs"):
        one.fit(X, np.zeros(len(X)))

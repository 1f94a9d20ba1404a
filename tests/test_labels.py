"""Labels through a network's classes (:mod:`gpumlp.labels`, ``Network.classes``): what ``fit``
learns, what ``evaluate`` and ``predict_classes`` map through them, pandas tables, and the
classes kept in model files (and none in files written before they were kept)."""

from __future__ import annotations

import numpy as np
import pytest

import gpumlp
from gpumlp.errors import CheckpointError
from gpumlp.files.checkpoint import write_checkpoint
from gpumlp.files.modelfile import model_meta, params_to_host
from helpers.bad_files import raises_exactly

RNG = np.random.default_rng(5)
CENTERS = np.array([[3.0, 0.0], [-3.0, 3.0], [0.0, -3.0]])
CODE = RNG.integers(0, 3, 150)
X = CENTERS[CODE] + RNG.standard_normal((150, 2)) * 0.5
NAMES = np.array(["setosa", "versicolor", "virginica"])


def trained(y, classes=None, X=X, **kw) -> gpumlp.Network:
    net = gpumlp.Network([2, 8, 3], activation="relu", output_activation="softmax",
                         cost="log_likelihood", init="he", backend="numpy", seed=0,
                         classes=classes)  # fmt: skip
    net.fit(X, y, epochs=15, batch_size=10, lr=0.1, optimizer="adam", **kw)
    return net


def test_string_labels_become_the_classes_and_come_back_from_predict_classes(tmp_path):
    net = trained(NAMES[CODE])
    assert net.classes == ("setosa", "versicolor", "virginica")
    assert np.mean(net.predict_classes(X) == NAMES[CODE]) > 0.95
    assert net.predict(X).dtype == np.int64  # indices, as documented
    assert net.evaluate(X, NAMES[CODE])["accuracy"] > 0.95
    net.save(tmp_path / "m.npz")
    again = gpumlp.load(tmp_path / "m.npz")
    assert again.classes == net.classes
    assert np.array_equal(again.predict_classes(X), net.predict_classes(X))


def test_a_column_of_names_is_taken_as_its_labels():
    # a one-column DataFrame or (m, 1) array of names, as scikit-learn users pass y: was
    # "y holds non-numeric objects (could not convert string to float: 'setosa')"
    pd = pytest.importorskip("pandas")
    for y in (NAMES[CODE][:, None], pd.DataFrame({"species": NAMES[CODE]})):
        net = trained(y)
        assert net.classes == ("setosa", "versicolor", "virginica")
        assert net.evaluate(X, y)["accuracy"] > 0.95


def test_a_file_lacking_a_class_is_scored_through_the_models_classes():
    # evaluated without setosa: the right accuracy (was 0.0: names encoded per file)
    net = trained(NAMES[CODE])
    rest = CODE != 0
    assert net.evaluate(X[rest], NAMES[CODE][rest])["accuracy"] > 0.95


def test_labels_1_2_3_for_3_outputs_are_classes_by_value():
    # wine's labels: three classes, not an error (was: "labels must lie in [0, 2]")
    net = trained(CODE + 1)
    assert net.classes == (1, 2, 3)
    assert set(net.predict(X).tolist()) <= {0, 1, 2}
    assert np.mean(net.predict_classes(X) == CODE + 1) > 0.95
    assert net.evaluate(X, (CODE + 1).astype(float))["accuracy"] > 0.95  # 2.0 finds class 2


def test_indices_stay_indices_and_no_classes_are_kept():
    net = trained(CODE)
    assert net.classes is None
    assert np.array_equal(net.predict_classes(X), net.predict(X))


def test_a_label_the_network_never_saw_is_named():
    net = trained(NAMES[CODE])
    with raises_exactly(ValueError, (
        "y holds the label 'rose', which is not a class of this network: its classes are "
        "'setosa', 'versicolor', 'virginica'"
    )):  # fmt: skip
        net.evaluate(X[:2], ["setosa", "rose"])
    with pytest.raises(ValueError, match=r"^validation_data\[1\] holds the label 'rose'"):
        trained(NAMES[CODE], validation_data=(X[:1], ["rose"]))
    with pytest.raises(ValueError, match="but this network has no classes to find them in"):
        trained(CODE).evaluate(X[:1], ["setosa"])


def test_given_classes_are_kept_and_a_training_set_may_lack_one():
    some = CODE != 2  # no virginica among the rows
    net = trained(NAMES[CODE][some], classes=NAMES, X=X[some])
    assert net.classes == tuple(NAMES)
    with pytest.raises(ValueError, match=r"y holds 2 distinct labels \('setosa', 'versicolor'\)"):
        trained(NAMES[CODE][some], X=X[some])  # without them, which output is which is unknown


@pytest.mark.parametrize(
    ("classes", "exc", "message"),
    [
        (["a", "b"], ValueError, "classes has 2 entries, but the network has 3 output units"),
        (["a", "b", "a"], ValueError, "classes holds 'a' more than once"),
        (["a", 1, 2], TypeError, "classes holds 1: its values must be of one kind"),
        ([1.0, float("nan"), 2], TypeError, "classes holds nan"),
        ("abc", TypeError, "classes must be a sequence"),
    ],
    ids=["count", "repeated", "mixed", "nan", "a-string"],
)
def test_bad_classes_are_refused_naming_them(classes, exc, message):
    with pytest.raises(exc, match=f"^{message}"):
        gpumlp.Network([2, 3], backend="numpy", classes=classes)


def test_labels_of_mixed_kinds_are_refused():
    y = np.array(["a", 1, "b"] * 50, dtype=object)
    with pytest.raises(TypeError, match=r"^y mixes labels of several kinds \(int, str\)"):
        trained(y)


def test_one_output_unit_takes_two_named_classes():
    net = gpumlp.Network([2, 1], output_activation="sigmoid", backend="numpy", seed=0)
    yes = CODE == 0
    net.fit(X, np.where(yes, "yes", "no"), epochs=20, batch_size=10, lr=0.5)
    assert net.classes == ("no", "yes")
    assert np.mean(net.predict_classes(X) == np.where(yes, "yes", "no")) > 0.9


def test_pandas_frames_name_the_inputs_and_are_taken_by_name():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"width": X[:, 0], "height": X[:, 1]})
    net = gpumlp.Network([2, 8, 3], backend="numpy", seed=0, activation="relu",
                         output_activation="softmax", cost="log_likelihood")  # fmt: skip
    net.fit(frame, pd.Series(NAMES[CODE]), epochs=15, batch_size=10, lr=0.1, optimizer="adam")
    assert net.features == ("width", "height") and net.classes == tuple(NAMES)
    swapped = frame[["height", "width"]]
    assert np.array_equal(net.predict_classes(swapped), net.predict_classes(frame))
    assert net.evaluate(swapped, pd.Series(NAMES[CODE]))["accuracy"] > 0.95
    with pytest.raises(ValueError, match=r"^X has no column 'width': the model's inputs are"):
        net.predict(frame[["height"]].assign(depth=1.0))


# -- model files -----------------------------------------------------------------------------


def test_a_model_file_written_before_classes_were_kept_loads_without_them(tmp_path):
    net = gpumlp.Network([2, 3], backend="numpy", seed=0)
    # the metadata such a file holds: the model part alone, no classes, features or data kind
    write_checkpoint(tmp_path / "old.npz", model_meta(net.spec), params_to_host(net.params))
    old = gpumlp.load(tmp_path / "old.npz")
    assert (old.classes, old.features, old.data_kind) == (None, None, None)
    assert old.evaluate(X, CODE)["n"] == 150  # its labels are its outputs' indices


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"classes": ["a", "b"]}, "classes has 2 entries, but the network has 3 output units"),
        ({"classes": ["a", 2, "c"]}, "classes holds 2: its values must be of one kind"),
        ({"classes": "abc"}, "classes must be a sequence"),
        ({"features": ["x", "x"]}, "features names the column 'x' more than once"),
        ({"features": ["x"]}, "features has 1 names, but the network takes 2 inputs"),
        ({"data": "sound"}, "data must be one of images, table, got 'sound'"),
        ({"label": 3}, "label must be a column's name, got 3"),
    ],
    ids=["count", "mixed", "string", "repeated", "width", "kind", "label"],
)
def test_a_model_file_with_bad_classes_is_refused_naming_it(tmp_path, meta, message):
    net = gpumlp.Network([2, 3], backend="numpy", seed=0)
    write_checkpoint(tmp_path / "m.npz", model_meta(net.spec) | meta, params_to_host(net.params))
    with pytest.raises(CheckpointError, match=rf"m\.npz' holds an invalid model configuration: "
                       rf"{message}"):  # fmt: skip
        gpumlp.load(tmp_path / "m.npz")


def test_a_regression_network_has_no_classes(tmp_path):
    # its outputs are values: classes given, set or read from a file are refused
    with pytest.raises(ValueError, match="classes: a regression network has none"):
        gpumlp.Network([2, 1], task="regression", classes=["low", "high"], backend="numpy")
    net = gpumlp.Network([2, 1], task="regression", backend="numpy", seed=0)
    with pytest.raises(ValueError, match="classes: a regression network has none"):
        net.classes = ["low", "high"]
    assert net.classes is None
    net.fit(X, X[:, 0] * 10.0, epochs=2, batch_size=10, lr=0.01)  # 1-D values: no classes
    assert net.classes is None
    with pytest.raises(ValueError, match="predict_classes is for classes; a regression network"):
        net.predict_classes(X)
    meta = model_meta(net.spec) | {"classes": ["low", "high"]}
    write_checkpoint(tmp_path / "m.npz", meta, params_to_host(net.params))
    with pytest.raises(CheckpointError, match=r"m\.npz' holds an invalid model configuration: "
                       "classes: a regression network has none"):  # fmt: skip
        gpumlp.load(tmp_path / "m.npz")

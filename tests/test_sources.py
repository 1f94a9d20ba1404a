"""``load_data``: which reader each file goes to (by its content), the DataSet it makes, the
held-out validation split, and the flags that do not fit the data."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpumlp.data.formats import data_format
from gpumlp.data.sources import DataSet, hold_out, load_data
from helpers.data import book_splits, write_idx_dir, write_npz, write_pkl


@pytest.fixture
def blobs3():
    """30 rows of 4 features, labels 0..2."""
    rng = np.random.default_rng(1)
    y = np.arange(30) % 3
    return (rng.standard_normal((30, 4)) + 3 * y[:, None]).astype(np.float32), y


# -- MNIST formats keep going to the MNIST reader ------------------------------------------------


def test_keras_npz_goes_to_the_mnist_reader(tmp_path):
    arrays = write_npz(tmp_path / "mnist.npz", n_train=60, n_test=12)
    data = load_data(str(tmp_path / "mnist.npz"))
    assert data.kind == "images" and data.name == "mnist" and data.n_features == 784
    X, y = data.train  # the first 50; the last 60 // 6 are the validation split
    assert np.array_equal(X, arrays["x_train"][:50].reshape(50, 784) / np.float32(255))
    assert np.array_equal(y, arrays["y_train"][:50]) and len(data.validation[0]) == 10


def test_book_pickle_goes_to_the_mnist_reader(tmp_path):
    splits = book_splits()
    data = load_data(str(write_pkl(tmp_path / "mnist.pkl.gz", splits)))
    assert data.kind == "images" and data.name == "mnist"
    assert np.array_equal(data.test[0], splits[2][0])


def test_fashion_mnist_like_idx_folder_goes_to_the_mnist_reader(tmp_path):
    """Fashion-MNIST and KMNIST ship as the same four IDX files: same reader, same layout."""
    arrays = write_idx_dir(tmp_path / "fashion", n_train=60, n_test=12)
    data = load_data(str(tmp_path / "fashion"))
    assert data.kind == "images" and data.name == "fashion" and data.n_outputs == 10
    assert np.array_equal(data.test[0], arrays["test_images"].reshape(12, 784) / np.float32(255))
    assert np.array_equal(data.test[1], arrays["test_labels"])


def test_zip_is_told_apart_by_member_names(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((2, 2)), y=np.zeros(2))
    np.savez(tmp_path / "b.npz", x_train=np.ones(1))
    with zipfile.ZipFile(tmp_path / "c.bin", "w") as zf:
        zf.writestr("X.npy", b"not read to tell the format")
    assert [data_format(tmp_path / n) for n in ("a.npz", "b.npz", "c.bin")] == [
        "npz",
        "mnist",
        "npz",
    ]


# -- tables ------------------------------------------------------------------------------------


def test_table_npz_csv_and_npy_pair_give_the_same_data_set(tmp_path, blobs3):
    X, y = blobs3
    np.savez(tmp_path / "t.npz", X=X, y=y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    rows = zip(X.tolist(), y, strict=True)
    lines = ["a,b,c,d,label"] + [",".join([*map(repr, r), str(c)]) for r, c in rows]
    (tmp_path / "t.txt").write_text("\n".join(lines) + "\n")  # text: a CSV whatever its name
    sets = [
        load_data(str(tmp_path / "t.npz")),
        load_data(str(tmp_path / "t.txt")),
        load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy")),
    ]
    for data in sets:
        assert data.kind == "table" and (data.n_features, data.n_outputs) == (4, 3)
        assert np.array_equal(data.train[0], X) and np.array_equal(data.train[1], y)
    assert [d.name for d in sets] == ["t", "t", "X"]
    assert isinstance(sets[2].train[0], np.ndarray)  # X.npy that fits: read into memory
    on_disk = load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"), from_disk=True)
    assert not isinstance(on_disk.train[0], np.ndarray)  # read as it is used
    assert np.array_equal(on_disk.train[0], X) and np.array_equal(on_disk.train[1], y)


def test_n_outputs_for_labels_targets_and_class_names():
    X = np.zeros((4, 2))
    labels = DataSet("t", (X, np.array([0, 1, 1, 0])), (X, np.array([0, 4, 1, 1])), None)
    assert labels.n_outputs == 5  # the largest label of any split
    targets = DataSet("t", (X, np.zeros((4, 7))), None, None)
    assert targets.n_outputs == 7
    names = DataSet("t", (X, np.array([0, 0, 1, 1])), None, None, "table", ("a", "b", "c"))
    assert names.n_outputs == 3 and names.limited(2).classes == ("a", "b", "c")


# -- --val-split -------------------------------------------------------------------------------


def test_val_split_is_seeded_and_partitions_the_rows(tmp_path, blobs3):
    X, y = blobs3
    np.savez(tmp_path / "t.npz", X=X, y=y)
    a = load_data(str(tmp_path / "t.npz"), val_split=0.2, seed=7)
    b = load_data(str(tmp_path / "t.npz"), val_split=0.2, seed=7)
    c = load_data(str(tmp_path / "t.npz"), val_split=0.2, seed=8)
    assert len(a.validation[0]) == 6 and len(a.train[0]) == 24
    assert np.array_equal(a.validation[0], b.validation[0])
    assert not np.array_equal(a.validation[0], c.validation[0])
    rows = {tuple(r) for r in np.concatenate([a.train[0], a.validation[0]]).tolist()}
    assert rows == {tuple(r) for r in X.tolist()}  # every row once, in one part


def test_hold_out_needs_a_row_on_each_side():
    with pytest.raises(ValueError, match=r"--val-split 0.01 of 10 rows holds out 0"):
        hold_out((np.zeros((10, 2)), np.zeros(10)), 0.01, 0)


def test_val_split_with_a_validation_split_is_refused(tmp_path, blobs3):
    X, y = blobs3
    np.savez(tmp_path / "t.npz", X=X, y=y, X_val=X, y_val=y)
    with pytest.raises(ValueError, match=r"--val-split: .*t.npz already has a validation split"):
        load_data(str(tmp_path / "t.npz"), val_split=0.2)
    write_npz(tmp_path / "mnist.npz")
    with pytest.raises(ValueError, match="the last sixth of its training images"):
        load_data(str(tmp_path / "mnist.npz"), val_split=0.2)
    with pytest.raises(ValueError, match="MNIST already has a validation split"):
        load_data(None, val_split=0.2)


# -- flags that do not fit the data --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "flags", "message"),
    [
        ("X.npy", {}, "is an .npy file of inputs X: give its labels or targets with --labels"),
        ("t.npz", {"labels": "y.npy"}, "--labels is for --data X.npy"),
        ("t.npz", {"label_column": "a"}, "--label-column is for --data FILE.csv"),
        ("X.npy", {"labels": "nope.npy"}, "--labels 'nope.npy' does not exist"),
        (None, {"labels": "y.npy"}, "--labels is for --data X.npy .*; MNIST holds its own"),
        ("t.npz", {"from_disk": True}, r"--from-disk is for --data X.npy .*; t.npz is not one"),
        (None, {"from_disk": True}, r"--from-disk is for --data X.npy .*; MNIST is not one"),
    ],
    ids=[
        "npy-without-labels",
        "labels-npz",
        "label-column-npz",
        "labels-missing",
        "mnist",
        "from-disk-npz",
        "from-disk-mnist",
    ],
)
def test_flags_that_do_not_fit_the_data(tmp_path, blobs3, monkeypatch, name, flags, message):
    monkeypatch.chdir(tmp_path)
    X, y = blobs3
    np.savez("t.npz", X=X, y=y)
    np.save("X.npy", X)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_data(name, **flags)


def test_unknown_and_missing_files(tmp_path):
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    with pytest.raises(ValueError, match=r"blob\.bin is in no known format; --data takes MNIST"):
        load_data(str(tmp_path / "blob.bin"))
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty is empty"):
        load_data(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        load_data(str(tmp_path / "nope.csv"))


# -- the classes are those of the training split -------------------------------------------------


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (
            {"y_test": [0, 99, 1]},
            r"t.npz: the test split holds label 99 \(at its index 1\), which no training row has; "
            r"the classes are those of the training split: 0, 1, 2$",
        ),
        (
            {"y_val": [3, 0, 1]},
            r"t.npz: the validation split holds label 3 \(at its index 0\), which no training row",
        ),
    ],
    ids=["y_test-99", "y_val-3"],
)
def test_table_labels_must_be_classes_of_the_training_split(tmp_path, arrays, message):
    X = np.ones((6, 2))
    splits = {"X": X, "y": [0, 1, 2, 2, 0, 1], "X_val": X[:3], "y_val": [0, 1, 2],
              "X_test": X[:3], "y_test": [2, 1, 0]} | arrays  # fmt: skip
    np.savez(tmp_path / "t.npz", **splits)
    with pytest.raises(ValueError, match=message):
        load_data(str(tmp_path / "t.npz"))


def test_numeric_labels_are_classes_by_value_never_an_empty_class_0(tmp_path):
    # wine is labelled 1, 2, 3: three classes (was: four, class 0 empty, trained as [13, h, 4])
    np.save(tmp_path / "X.npy", np.ones((6, 2)))
    np.save(tmp_path / "y.npy", np.array([1, 3, 2, 2, 1, 3]))
    data = load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"))
    assert data.classes == (1, 2, 3) and data.n_outputs == 3
    assert data.train[1].tolist() == [0, 2, 1, 1, 0, 2]
    np.save(tmp_path / "y.npy", np.array([0, 1, 1000000, 1, -1, 0.0]))  # values, any size
    data = load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"))
    assert data.classes == (-1, 0, 1, 1000000) and data.train[1].tolist() == [1, 2, 3, 2, 0, 1]


def test_scored_files_are_held_to_the_models_classes(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((4, 2)))
    np.save(tmp_path / "y.npy", np.array([7, 3, 7, 7]))  # examples a trained network scores
    scored = load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"),
                       classes=(3, 5, 7))  # fmt: skip
    assert scored.classes == (3, 5, 7) and scored.train[1].tolist() == [2, 0, 2, 2]
    with pytest.raises(ValueError, match=(
        r"y.npy holds label 7 \(at its index 0\), which is not a class of the model: its "
        r"classes are 3, 5$"
    )):  # fmt: skip
        load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"), classes=(3, 5))
    indices = load_data(str(tmp_path / "X.npy"), labels=str(tmp_path / "y.npy"), classes=None)
    assert indices.classes is None and indices.train[1].tolist() == [7, 3, 7, 7]
    (tmp_path / "t.csv").write_text("a,kind\n1,x\n2,y\n")
    with pytest.raises(ValueError, match=r"t.csv holds class names \('x', 'y'\), but the model"):
        load_data(str(tmp_path / "t.csv"), classes=None)


def test_a_class_name_held_out_whole_by_val_split_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,kind\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(9))
                                    + "9,rare\n")  # fmt: skip
    rows = (np.zeros((10, 1)), np.arange(10))
    seed = next(s for s in range(100) if 9 in hold_out(rows, 0.3, s)[1][1])  # 'rare' held out
    with pytest.raises(ValueError, match=(
        r"t.csv: the validation split holds label 'rare' \(at its index \d\), which no training "
        r"row has; the classes are those of the training split: 'a', 'b'$"
    )):  # fmt: skip
        load_data(str(tmp_path / "t.csv"), val_split=0.3, seed=seed)


# -- files that are not what they claim ----------------------------------------------------------


def test_a_pickle_named_npy_is_refused_naming_it(tmp_path):
    (tmp_path / "X.npy").write_bytes(pickle.dumps(np.ones((3, 2))))
    np.save(tmp_path / "y.npy", np.zeros(3))
    for labels in (None, str(tmp_path / "y.npy")):
        with pytest.raises(ValueError, match=r"X.npy is not an .npy file \(it holds a pickle\)"):
            load_data(str(tmp_path / "X.npy"), labels=labels)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_a_pseudo_file_of_size_0_is_refused_as_empty():
    with pytest.raises(ValueError, match=r"^/proc/self/mem is empty; --data takes MNIST"):
        load_data("/proc/self/mem")

"""Bad input across the public edge: each case asserts the exception type and that the message
names the argument (or file) at fault. Data-file and checkpoint cases live at the bottom."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import gpumlp
from gpumlp import checkpoint
from gpumlp.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from gpumlp.cli import main
from gpumlp.datasets import load_mnist

RNG = np.random.default_rng(0)
X = RNG.random((12, 4))
Y = RNG.integers(0, 3, 12)


def net(**kw):
    return gpumlp.Network([4, 5, 3], **{"backend": "numpy", "seed": 0, **kw})


def fit(X=X, y=Y, **kw):
    args = {"epochs": 1, "batch_size": 4, "lr": 0.1, **kw}
    return net().fit(X, y, **args)


CONSTRUCTOR_CASES = [
    ("sizes-one-layer", lambda: gpumlp.Network([4]), ValueError, "sizes must have at least 2"),
    ("sizes-empty", lambda: gpumlp.Network([]), ValueError, "sizes"),
    ("sizes-zero", lambda: gpumlp.Network([4, 0, 3]), ValueError, r"sizes\[1\] must be >= 1"),
    ("sizes-negative", lambda: gpumlp.Network([4, -2, 3]), ValueError, r"sizes\[1\]"),
    (
        "sizes-float",
        lambda: gpumlp.Network([4, 2.5, 3]),
        TypeError,
        r"sizes\[1\] must be an integer",
    ),
    ("sizes-bool", lambda: gpumlp.Network([4, True, 3]), TypeError, r"sizes\[1\]"),
    ("sizes-string", lambda: gpumlp.Network("784,30,10"), TypeError, "sizes must be a sequence"),
    ("sizes-int", lambda: gpumlp.Network(784), TypeError, "sizes must be a sequence"),
    (
        "activation-unknown",
        lambda: net(activation="swish"),
        ValueError,
        "activation='swish'.*sigmoid",
    ),
    ("activation-type", lambda: net(activation=3), TypeError, "activation must be a string"),
    (
        "activation-softmax-hidden",
        lambda: net(activation="softmax"),
        ValueError,
        "only as output_activation",
    ),
    (
        "output-unknown",
        lambda: net(output_activation="gelu"),
        ValueError,
        "output_activation='gelu'",
    ),
    ("cost-unknown", lambda: net(cost="hinge"), ValueError, "cost='hinge'.*quadratic"),
    (
        "cost-output-mismatch",
        lambda: net(output_activation="relu", cost="cross_entropy"),
        ValueError,
        "output_activation='relu'",
    ),
    ("init-unknown", lambda: net(init="xavier"), ValueError, "init='xavier'"),
    ("dtype-unknown", lambda: net(dtype="float16"), ValueError, "dtype must be one of"),
    ("backend-unknown", lambda: net(backend="tpu"), ValueError, "backend must be one of"),
    ("seed-negative", lambda: gpumlp.Network([4, 3], seed=-1), ValueError, "seed must be >= 0"),
    ("seed-float", lambda: gpumlp.Network([4, 3], seed=1.5), TypeError, "seed must be an integer"),
]

FIT_CASES = [
    ("X-1d", lambda: fit(X=X[:, 0]), ValueError, "X must be 2-D"),
    ("X-3d", lambda: fit(X=X[:, :, None]), ValueError, "X must be 2-D"),
    ("X-width", lambda: fit(X=X[:, :3]), ValueError, r"X has 3 features.*sizes\[0\]"),
    ("X-empty", lambda: fit(X=X[:0], y=Y[:0]), ValueError, "X is empty"),
    ("X-nan", lambda: fit(X=np.where(X > 0.9, np.nan, X)), ValueError, "X contains NaN or inf"),
    ("X-inf", lambda: fit(X=np.where(X > 0.9, np.inf, X)), ValueError, "X contains NaN or inf"),
    ("X-complex", lambda: fit(X=X + 1j), TypeError, "X must be real-valued"),
    ("X-strings", lambda: fit(X=X.astype(str)), TypeError, "X must be numeric"),
    ("X-object", lambda: fit(X=np.array([[object()] * 4] * 12)), TypeError, "X holds non-numeric"),
    (
        "X-ragged",
        lambda: fit(X=[[1.0, 2.0, 3.0, 4.0], [1.0]] * 6),
        ValueError,
        "X is not a rectangular",
    ),
    ("X-none", lambda: fit(X=None), TypeError, "X"),
    ("y-length", lambda: fit(y=Y[:-1]), ValueError, "y has 11 entries but X has 12"),
    (
        "y-label-high",
        lambda: fit(y=np.where(Y == 2, 3, Y)),
        ValueError,
        r"labels must lie in \[0, 2\]",
    ),
    ("y-label-negative", lambda: fit(y=np.where(Y == 2, -1, Y)), ValueError, "y holds labels in"),
    ("y-non-integer", lambda: fit(y=Y + 0.5), ValueError, "y must hold integer class labels"),
    ("y-nan", lambda: fit(y=np.where(Y == 2, np.nan, Y)), ValueError, "y contains NaN"),
    ("y-width", lambda: fit(y=np.eye(4)[Y]), ValueError, r"y has shape \(12, 4\)"),
    ("y-column", lambda: fit(y=Y[:, None]), ValueError, "pass class labels as a 1-D array"),
    ("y-3d", lambda: fit(y=np.eye(3)[Y][:, :, None]), ValueError, "y must be labels"),
    ("y-scalar", lambda: fit(y=3), ValueError, "y must be labels"),
    ("y-complex", lambda: fit(y=Y + 0j), TypeError, "y must be real-valued"),
    ("epochs-zero", lambda: fit(epochs=0), ValueError, "epochs must be >= 1"),
    ("epochs-float", lambda: fit(epochs=2.0), TypeError, "epochs must be an integer"),
    ("batch-zero", lambda: fit(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("batch-negative", lambda: fit(batch_size=-5), ValueError, "batch_size must be >= 1"),
    ("batch-float", lambda: fit(batch_size=2.5), TypeError, "batch_size must be an integer"),
    ("lr-zero", lambda: fit(lr=0), ValueError, "lr must be > 0"),
    ("lr-negative", lambda: fit(lr=-1.0), ValueError, "lr must be > 0"),
    ("lr-nan", lambda: fit(lr=float("nan")), ValueError, "lr must be finite"),
    ("lr-string", lambda: fit(lr="0.1"), TypeError, "lr must be a real number"),
    ("l2-negative", lambda: fit(l2=-0.1), ValueError, "l2 must be >= 0"),
    ("l2-nan", lambda: fit(l2=float("nan")), ValueError, "l2 must be finite"),
    ("l1-negative", lambda: fit(l1=-1.0), ValueError, "l1 must be >= 0"),
    ("dropout-one", lambda: fit(dropout=1.0), ValueError, "dropout must be < 1"),
    (
        "momentum-high",
        lambda: fit(optimizer="momentum", momentum=1.5),
        ValueError,
        "momentum must be < 1",
    ),
    ("optimizer-unknown", lambda: fit(optimizer="lbfgs"), ValueError, "optimizer='lbfgs'"),
    ("schedule-unknown", lambda: fit(schedule="exp"), ValueError, "schedule='exp'"),
    ("plateau-no-validation", lambda: fit(schedule="plateau"), ValueError, "validation_data"),
    ("patience-no-validation", lambda: fit(patience=3), ValueError, "validation_data"),
    ("monitor-unknown", lambda: fit(monitor=["loss"]), ValueError, "monitor entry 'loss'"),
    (
        "validation-not-pair",
        lambda: fit(validation_data=X),
        TypeError,
        "validation_data must be a pair",
    ),
    (
        "validation-width",
        lambda: fit(validation_data=(X[:, :2], Y)),
        ValueError,
        r"validation_data\[0\]",
    ),
    (
        "validation-labels",
        lambda: fit(validation_data=(X, Y + 7)),
        ValueError,
        r"validation_data\[1\]",
    ),
    ("shuffle-string", lambda: fit(shuffle="yes"), TypeError, "shuffle must be True or False"),
    (
        "ce-targets-range",
        lambda: gpumlp.Network([4, 3], cost="cross_entropy", backend="numpy").fit(
            X, np.full((12, 3), 2.0), epochs=1, batch_size=4, lr=0.1
        ),
        ValueError,
        r"y must lie in \[0, 1\]",
    ),
]

OTHER_CASES = [
    ("predict-width", lambda: net().predict(X[:, :2]), ValueError, "X has 2 features"),
    ("evaluate-length", lambda: net().evaluate(X, Y[:3]), ValueError, "y has 3 entries"),
    ("gradients-nan", lambda: net().gradients(X * np.nan, Y), ValueError, "X contains NaN"),
    ("chunk-zero", lambda: net().feedforward(X, chunk=0), ValueError, "chunk must be >= 1"),
    (
        "load-params-count",
        lambda: net().load_params([np.ones((5, 4))], [np.ones(5)]),
        ValueError,
        "expected 2 weight",
    ),
    (
        "load-params-shape",
        lambda: net().load_params([np.ones((4, 5)), np.ones((3, 5))], [np.ones(5), np.ones(3)]),
        ValueError,
        r"weights\[0\] must have shape \(5, 4\)",
    ),
    (
        "load-params-strings",
        lambda: net().load_params(
            [np.full((5, 4), "a"), np.ones((3, 5))], [np.ones(5), np.ones(3)]
        ),
        TypeError,
        r"weights\[0\]",
    ),
    (
        "load-params-complex",
        lambda: net().load_params(
            [np.ones((5, 4)) + 1j, np.ones((3, 5))], [np.ones(5), np.ones(3)]
        ),
        TypeError,
        r"weights\[0\] must be real-valued",
    ),
]


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [pytest.param(c, e, m, id=i) for i, c, e, m in CONSTRUCTOR_CASES + FIT_CASES + OTHER_CASES],
)
def test_bad_input_is_named(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert type(info.value) is exc or issubclass(type(info.value), exc)


def test_batch_size_larger_than_data_is_allowed():
    hist = fit(batch_size=10_000)
    assert len(hist) == 1


def test_integer_and_bool_inputs_are_accepted():
    fit(X=(X > 0.5).astype(np.int64))
    fit(X=X > 0.5)
    fit(y=Y.astype(np.float64))  # integral floats are labels


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float64, (6, 4), elements=st.floats(-1e6, 1e6, allow_nan=False)),
    y=arrays(np.int64, (6,), elements=st.integers(0, 2)),
    batch=st.integers(1, 8),
)
def test_any_finite_input_trains_without_error(x, y, batch):
    n = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    try:
        n.fit(x, y, epochs=1, batch_size=batch, lr=0.1)
    except gpumlp.DivergedError:
        pass  # a legitimate, named outcome for inputs as large as 1e6
    assert all(np.isfinite(np.asarray(t)).all() for t in n.params.arrays())


# -- data files, checkpoints and the command line ------------------------------------------------
#
# Each bad file is tried through the Python API (exact exception type, message naming the file)
# and through ``gpumlp`` (exit code 2, one line on stderr naming the file).


def cli(*argv) -> tuple[int, str]:
    """``gpumlp.cli.main(argv)`` -> (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, err.getvalue()


def mnist_arrays(n_train=60, n_test=12, **override):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }
    return {k: v for k, v in (arrays | override).items() if v is not None}


def npz(**override):
    def write(path: Path) -> Path:
        path = path / "mnist.npz"
        np.savez(path, **mnist_arrays(**override))
        return path

    return write


def raw(content: bytes, name: str = "mnist.npz"):
    def write(path: Path) -> Path:
        (path / name).write_bytes(content)
        return path / name

    return write


def truncated_npz(path: Path) -> Path:
    full = npz()(path).read_bytes()
    (path / "mnist.npz").write_bytes(full[: len(full) // 2])
    return path / "mnist.npz"


def empty_folder(path: Path) -> Path:
    (path / "idx").mkdir()
    return path / "idx"


DATA_CASES = [
    ("missing", lambda p: p / "nope.npz", FileNotFoundError, "does not exist"),
    ("empty", raw(b""), ValueError, "is empty"),
    ("text", raw(b"hello, world\n" * 10), ValueError, "no known format"),
    ("truncated-npz", truncated_npz, ValueError, "not a valid MNIST npz"),
    ("truncated-gzip", raw(b"\x1f\x8b\x08\x00\x00", "m.pkl.gz"), ValueError, "not a valid"),
    ("folder-without-idx", empty_folder, ValueError, "has no train-images-idx3-ubyte"),
    ("npz-missing-key", npz(y_test=None), ValueError, "missing array.*y_test"),
    ("npz-label-10", npz(y_train=np.arange(60) % 11), ValueError, r"labels must be 0\.\.9"),
    ("npz-label-negative", npz(y_test=np.arange(12) - 1), ValueError, r"labels must be 0\.\.9"),
    ("npz-float-images", npz(x_test=np.zeros((12, 28, 28))), ValueError, "must be uint8"),
    ("npz-27-pixels", npz(x_train=np.zeros((60, 28, 27), np.uint8)), ValueError, "28, 28"),
    ("npz-count", npz(y_train=np.arange(59) % 10), ValueError, "60 train images but 59"),
    ("npz-too-few", npz(n_train=5, y_train=np.arange(5)), ValueError, "too few"),
    ("single-idx-file", raw(b"\x00\x00\x08\x03" + b"\0" * 12, "x.idx"), ValueError, "single IDX"),
]


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in DATA_CASES]
)
def test_bad_data_file(make, exc, match, tmp_path):
    path = make(tmp_path)
    with pytest.raises(exc, match=match) as info:
        load_mnist(path)
    assert type(info.value) is exc
    assert str(path) in str(info.value)
    code, stderr = cli("train", "--data", path, "--out", tmp_path / "run", "--backend", "numpy")
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1
    assert str(path) in stderr and re.search(match, stderr)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_data_path_of_wrong_type():
    with pytest.raises(TypeError, match="path must be a str"):
        load_mnist(123)


def header_positions(path: Path) -> list[int]:
    """Byte offsets of every zip header and .npy header in ``path`` (where parsers look)."""
    with zipfile.ZipFile(path) as zf:
        starts = [info.header_offset for info in zf.infolist()]
    size = path.stat().st_size
    spans = [range(s, s + 30 + 64 + 128) for s in starts] + [range(size - 400, size)]
    return sorted({i for span in spans for i in span if 0 <= i < size})


def test_damaged_npz_headers_give_value_errors(tmp_path):
    path = npz(n_train=6, n_test=1, y_train=np.arange(6), y_test=np.arange(1))(tmp_path)
    original = path.read_bytes()
    damaged = tmp_path / "damaged.npz"
    outcomes = set()
    for i in header_positions(path):
        for mask in (0x01, 0xFF):
            data = bytearray(original)
            data[i] ^= mask
            damaged.write_bytes(bytes(data))
            try:
                load_mnist(damaged)
                outcomes.add("loaded")  # a byte no reader looks at (time stamp, padding)
            except ValueError as e:  # never NotImplementedError, RuntimeError, TokenError...
                assert str(damaged) in str(e)
                outcomes.add("refused")
    assert outcomes == {"loaded", "refused"}


# -- checkpoints --


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.npz"
    net().save(path)
    return path


def rewritten(change_meta=None, change_arrays=None):
    """A checkpoint re-signed by ``write_checkpoint`` after changing its metadata or arrays."""

    def write(path: Path, model: Path) -> Path:
        meta, arrays = read_checkpoint(model)
        meta = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
        if change_meta:
            meta = change_meta(meta)
        if change_arrays:
            arrays = change_arrays(arrays)
        write_checkpoint(path / "ckpt.npz", meta, arrays)
        return path / "ckpt.npz"

    return write


def damaged(edit):
    def write(path: Path, model: Path) -> Path:
        (path / "ckpt.npz").write_bytes(edit(model.read_bytes()))
        return path / "ckpt.npz"

    return write


def future_format(path: Path, model: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)
        gpumlp.load(model, backend="numpy").save(path / "ckpt.npz")
    return path / "ckpt.npz"


def plain_npz(path: Path, model: Path) -> Path:
    np.savez(path / "ckpt.npz", w=np.ones(3))
    return path / "ckpt.npz"


def npy_file(path: Path, model: Path) -> Path:
    with open(path / "ckpt.npz", "wb") as f:
        np.save(f, np.ones(3))
    return path / "ckpt.npz"


def flip_middle(data: bytes) -> bytes:
    i = len(data) // 2  # inside param/... data: the zip CRC or the sha256 catches it
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]


def without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


CKPT_CASES = [
    ("missing", lambda p, m: p / "nope.npz", FileNotFoundError, "does not exist"),
    ("directory", lambda p, m: p, CheckpointError, "is a directory"),
    ("empty", damaged(lambda b: b""), CheckpointError, "damaged or not a gpumlp checkpoint"),
    ("truncated", damaged(lambda b: b[: len(b) // 2]), CheckpointError, "damaged"),
    ("text", damaged(lambda b: b"not a zip\n" * 50), CheckpointError, "damaged"),
    ("flipped-byte", damaged(flip_middle), CheckpointError, "damaged|corrupted"),
    ("plain-npz", plain_npz, CheckpointError, "not a gpumlp checkpoint"),
    ("npy", npy_file, CheckpointError, "not a gpumlp checkpoint"),
    ("future-format", future_format, CheckpointError, r"format 2; .*upgrade gpumlp"),
    ("no-sizes", rewritten(without("sizes")), CheckpointError, "lacks model metadata 'sizes'"),
    (
        "bad-sizes",
        rewritten(lambda m: m | {"sizes": [4, 0, 3]}),
        CheckpointError,
        r"invalid model configuration: sizes\[1\]",
    ),
    (
        "unknown-cost",
        rewritten(lambda m: m | {"cost": "hinge"}),
        CheckpointError,
        "invalid model configuration: cost='hinge'",
    ),
    ("no-param", rewritten(None, without("param/3")), CheckpointError, "lacks parameter"),
    (
        "param-shape",
        rewritten(None, lambda a: a | {"param/0": np.ones((4, 5))}),
        CheckpointError,
        r"invalid parameters: array 'param/0' has shape \(4, 5\), expected \(5, 4\)",
    ),
    (
        "param-nan",
        rewritten(None, lambda a: a | {"param/1": np.full(5, np.nan)}),
        CheckpointError,
        r"invalid parameters: biases\[0\] contains NaN",
    ),
]


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in CKPT_CASES]
)
def test_bad_checkpoint(make, exc, match, tmp_path, model_file):
    path = make(tmp_path, model_file)
    with pytest.raises(exc, match=match) as info:
        gpumlp.load(path, backend="numpy")
    assert type(info.value) is exc
    assert str(path) in str(info.value)
    code, stderr = cli("predict", path, tmp_path / "digit.png", "--backend", "numpy")
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1
    assert str(path) in stderr


@pytest.fixture(scope="module")
def corruptible(tmp_path_factory) -> tuple[bytes, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    n = gpumlp.Network([3, 2], backend="numpy", seed=1)
    n.save(path)
    return path.read_bytes(), [np.array(t) for t in n.params.arrays()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.floats(0, 1, exclude_max=True), value=st.integers(0, 255))
def test_any_corruption_of_a_checkpoint_is_detected(corruptible, where, value):
    """A changed byte makes loading fail with CheckpointError, or changes nothing that is read:
    never different numbers silently."""
    original, params = corruptible
    data = bytearray(original)
    i = int(where * len(data))
    data[i] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.npz"
        path.write_bytes(bytes(data))
        try:
            loaded = gpumlp.load(path, backend="numpy")
        except CheckpointError as e:
            assert str(path) in str(e)
            return
    got = [np.array(t) for t in loaded.params.arrays()]
    assert all(
        g.dtype == p.dtype and np.array_equal(g, p) for g, p in zip(got, params, strict=True)
    )


# -- the command line: bad flags, files and folders --

GOOD = ["--epochs", "1", "--limit", "40", "--sizes", "784,8,10", "--quiet", "--backend", "numpy"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> tuple[Path, Path]:
    """(data file, run folder of a finished 1-epoch ``gpumlp train``)."""
    base = tmp_path_factory.mktemp("cli")
    data = npz()(base)
    out = base / "run"
    assert cli("train", "--data", data, *GOOD, "--out", out)[0] == 0
    return data, out


def png(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(path / "digit.png")
    return path / "digit.png"


CLI_CASES = [
    ("sizes-letter", ["train", "--sizes", "784,x"], "--sizes: expected comma-separated"),
    ("sizes-one", ["train", "--sizes", "784"], "--sizes: expected at least 2"),
    ("sizes-zero", ["train", "--sizes", "784,0,10"], "--sizes: expected at least 2 positive"),
    ("lr-negative", ["train", "--lr", "-1"], "--lr: must be > 0, got -1"),
    ("lr-zero", ["train", "--lr", "0"], "--lr: must be > 0"),
    ("lr-nan", ["train", "--lr", "nan"], "--lr: must be finite"),
    ("lr-word", ["train", "--lr", "fast"], "--lr: expected a number, got 'fast'"),
    ("batch-zero", ["train", "--batch-size", "0"], "--batch-size: must be >= 1"),
    ("batch-float", ["train", "--batch-size", "2.5"], "--batch-size: expected an integer"),
    ("epochs-zero", ["train", "--epochs", "0"], "--epochs: must be >= 1"),
    ("limit-zero", ["train", "--limit", "0"], "--limit: must be >= 1"),
    ("seed-negative", ["train", "--seed", "-3"], "--seed: must be >= 0"),
    ("dropout-one", ["train", "--dropout", "1"], r"--dropout: must lie in \[0, 1\)"),
    ("momentum-high", ["train", "--momentum", "1.5"], "--momentum: must lie in"),
    ("l2-negative", ["train", "--l2", "-0.1"], "--l2: must be >= 0"),
    ("checkpoint-every-zero", ["train", "--checkpoint-every", "0"], "--checkpoint-every"),
    ("activation", ["train", "--activation", "swish"], "--activation: invalid choice"),
    ("cost", ["train", "--cost", "hinge"], "--cost: invalid choice"),
    ("dtype", ["train", "--dtype", "float16"], "--dtype: invalid choice"),
    ("backend", ["train", "--backend", "tpu"], "backend must be one of"),
    ("unknown-flag", ["train", "--learning-rate", "1"], "unrecognized arguments: --learning-rate"),
    ("unknown-command", ["fit"], "invalid choice: 'fit'"),
    ("no-command", [], "required: COMMAND"),
    ("data-action", ["data", "delete"], "invalid choice: 'delete'"),
    (
        "cost-output-mismatch",
        ["train", "--output-activation", "relu", "--cost", "cross_entropy"],
        "output_activation='relu'",
    ),
]


@pytest.mark.parametrize(("argv", "match"), [pytest.param(*c[1:], id=c[0]) for c in CLI_CASES])
def test_bad_command_line(argv, match, tmp_path, run_folder):
    data, _ = run_folder
    extra = ["--data", data, "--out", tmp_path / "run"] if argv[:1] == ["train"] else []
    code, stderr = cli(*argv, *extra)
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1
    assert re.search(match, stderr), stderr
    assert not (tmp_path / "run").exists()


def file_in_the_way(path: Path) -> Path:
    (path / "file").write_text("x")
    return path / "file"


def cupy_unusable() -> bool:
    return not gpumlp.backend.cupy_status()[0]


CLI_FILE_CASES = [
    ("out-is-a-file", lambda p, d, r: ["train", "--out", file_in_the_way(p)], "not a directory"),
    ("resume-missing", lambda p, d, r: ["train", "--resume", p / "x.npz"], "no checkpoint at"),
    (
        "resume-other-shape",
        lambda p, d, r: ["train", "--resume", r, "--sizes", "784,9,10", "--out", p / "o"],
        r"checkpoint\.npz' is for a network with sizes=\[784, 8, 10\]",
    ),
    (
        "resume-other-activation",
        lambda p, d, r: ["train", "--resume", r, "--activation", "tanh", "--out", p / "o"],
        "activation='sigmoid'",
    ),
    (
        "resume-other-optimizer",
        lambda p, d, r: ["train", "--resume", r, "--optimizer", "adam", "--out", p / "o"],
        "written with optimizer='sgd'",
    ),
    (
        "resume-a-model",
        lambda p, d, r: ["train", "--resume", r / "model.npz", "--out", p / "o"],
        r"model\.npz' holds a model, not a resumable",
    ),
    ("resume-folder-empty", lambda p, d, r: ["train", "--resume", p], "no checkpoint at"),
    ("eval-missing-model", lambda p, d, r: ["eval", p / "m.npz", "--data", d], "does not exist"),
    ("eval-model-is-folder", lambda p, d, r: ["eval", p, "--data", d],
     "is a folder without model.npz or checkpoint.npz"),
    (
        "eval-not-mnist-model",
        lambda p, d, r: ["eval", small_model(p), "--data", d],
        "takes 4 inputs, but the data has 784 features per example",
    ),
    (
        "eval-missing-data",
        lambda p, d, r: ["eval", r / "model.npz", "--data", p / "no.npz"],
        r"no\.npz",
    ),
    (
        "predict-missing-image",
        lambda p, d, r: ["predict", r / "model.npz", p / "x.png"],
        r"image .*x\.png' does not exist",
    ),
    (
        "predict-folder-without-images",
        lambda p, d, r: ["predict", r / "model.npz", p],
        "holds no image files",
    ),
    (
        "predict-text-as-image",
        lambda p, d, r: ["predict", r / "model.npz", file_in_the_way(p)],
        "cannot be read",
    ),
    (
        "predict-truncated-png",
        lambda p, d, r: ["predict", r / "model.npz", damaged_png(p)],
        "cannot be read",
    ),
    (
        "predict-with-data-file",
        lambda p, d, r: ["predict", d, png(p)],
        "not a gpumlp checkpoint",
    ),
]


def small_model(path: Path) -> Path:
    net().save(path / "small.npz")
    return path / "small.npz"


def damaged_png(path: Path) -> Path:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (280, 280), dtype=np.uint8)
    Image.fromarray(noise).save(path / "big.png")
    data = (path / "big.png").read_bytes()
    (path / "big.png").write_bytes(data[: len(data) // 2])
    return path / "big.png"


@pytest.mark.parametrize(("argv", "match"), [pytest.param(*c[1:], id=c[0]) for c in CLI_FILE_CASES])
def test_bad_file_on_the_command_line(argv, match, tmp_path, run_folder):
    pytest.importorskip("PIL")
    data, run = run_folder
    before = (run / "checkpoint.npz").read_bytes()
    args = argv(tmp_path, data, run)
    extra = ["--data", data, "--backend", "numpy"] if args[0] == "train" else []
    code, stderr = cli(*args, *extra)
    assert code == 2
    assert stderr.startswith("gpumlp: error: ") and stderr.count("\n") == 1
    assert re.search(match, stderr), stderr
    assert (run / "checkpoint.npz").read_bytes() == before  # a refused resume changes nothing


@pytest.mark.skipif(not cupy_unusable(), reason="CuPy is usable here")
def test_cupy_backend_unavailable_exits_2(tmp_path, run_folder):
    data, _ = run_folder
    code, stderr = cli("train", "--data", data, *GOOD[:-2], "--backend", "cupy", "--out", tmp_path)
    assert code == 2
    assert "backend='cupy' cannot run" in stderr


# -- divergence --

# A linear network: nothing saturates or dies, so a huge lr surely overflows to inf and NaN.
LINEAR = {"activation": "identity", "init": "scaled", "backend": "numpy", "seed": 0}


def linear_net():
    return gpumlp.Network([784, 16, 10], **LINEAR)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    train, _, _ = load_mnist(npz(n_train=240)(tmp_path_factory.mktemp("digits")))
    return train


def params_of(n) -> list[np.ndarray]:
    return [np.array(t, copy=True) for t in n.params.arrays()]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_divergence_in_the_first_epoch_keeps_the_initial_weights(digits):
    X, y = digits
    n = linear_net()
    start = params_of(n)
    with pytest.raises(
        gpumlp.DivergedError, match=r"diverged in epoch 0.*try a smaller lr"
    ) as info:
        n.fit(X, y, epochs=3, batch_size=10, lr=1e6)
    assert info.value.epoch == 0
    assert len(info.value.history) == 0
    assert info.value.history.stop_reason.startswith("diverged in epoch 0 (lr=1e+06): the training")
    assert all(np.array_equal(a, b) for a, b in zip(params_of(n), start, strict=True))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid:RuntimeWarning")
def test_divergence_later_keeps_the_last_good_epoch(digits, tmp_path):
    X, y = digits
    good = linear_net()
    good.fit(X, y, epochs=2, batch_size=10, lr=1e-3, checkpoint=tmp_path / "c.npz")
    n = linear_net()
    with pytest.raises(gpumlp.DivergedError, match="diverged in epoch 2") as info:
        n.fit(X, y, epochs=5, batch_size=10, lr=1e6, resume=tmp_path / "c.npz")
    assert info.value.epoch == 2
    history = info.value.history
    assert [r["epoch"] for r in history] == [0, 1]
    assert history.stop_reason.startswith("diverged in epoch 2")
    assert all(np.array_equal(a, b) for a, b in zip(params_of(n), params_of(good), strict=True))
    # ... and the checkpoint holds that last good epoch, to resume from with a smaller lr
    meta, _ = read_checkpoint(tmp_path / "c.npz")
    assert meta["epoch"] == 2
    resumed = linear_net().fit(X, y, epochs=3, batch_size=10, lr=1e-3, resume=tmp_path / "c.npz")
    assert [r["epoch"] for r in resumed] == [0, 1, 2]
    assert resumed.stop_reason is None


def test_divergence_on_the_command_line_exits_3(tmp_path, run_folder):
    data, _ = run_folder
    out = tmp_path / "run"
    argv = ["train", "--data", data, *GOOD, "--activation", "identity", "--init", "scaled"]
    code, stderr = cli(*argv, "--lr", "1e6", "--epochs", "3", "--out", out)
    assert code == 3
    assert "diverged in epoch 0" in stderr and "smaller lr" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr and "RuntimeWarning" not in stderr
    history = json.loads((out / "history.json").read_text())
    assert history["stop_reason"].startswith("diverged in epoch 0")
    assert history["epochs"] == []
    model = gpumlp.load(out / "model.npz", backend="numpy")
    assert all(np.isfinite(np.asarray(t)).all() for t in model.params.arrays())

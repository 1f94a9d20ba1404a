"""Checkpoints: round trips on every backend, a plain npz, damaged and foreign files, atomic
writes, and resumed training that matches an uninterrupted run bit for bit (in process, and a
``gpumlp train`` killed with SIGKILL)."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpumlp
from conftest import host, reap, write_tiny_mnist
from gpumlp import atomicio
from gpumlp import checkpoint as ckpt_mod
from gpumlp.atomicio import atomic_write_bytes
from gpumlp.checkpoint import CheckpointError, read_checkpoint


def _params(net) -> list[np.ndarray]:
    return [host(t).copy() for t in net.params.arrays()]


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), "parameters differ"


@pytest.fixture
def trained(blobs):
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], cost="cross_entropy", backend="numpy", seed=0)
    net.fit(X, y, epochs=2, batch_size=10, lr=0.5, seed=0)
    return net


@pytest.fixture
def saved(trained, tmp_path) -> Path:
    path = tmp_path / "model.npz"
    trained.save(path)
    return path


# -- round trips --------------------------------------------------------------------------------


def test_round_trip_on_every_backend(backend, blobs, tmp_path):
    X, y = blobs
    net = gpumlp.Network(
        [4, 6, 3], activation="tanh", output_activation="softmax", cost="log_likelihood",
        init="scaled", backend=backend, seed=0,
    )  # fmt: skip
    net.fit(X, y, epochs=2, batch_size=10, lr=0.5, seed=0)
    path = tmp_path / "model.npz"
    net.save(path)
    for target in (backend, "numpy"):
        back = gpumlp.load(path, backend=target)
        assert (back.sizes, back.activation, back.output_activation, back.cost.name) == (
            [4, 6, 3], "tanh", "softmax", "log_likelihood",
        )  # fmt: skip
        _assert_same(_params(back), _params(net))  # the file's bytes: exact on every backend
        _same_outputs(back, net, X, exact=back.backend == net.backend)


# Outputs computed on two backends differ by rounding (BLAS summation order, the math
# library's exp/tanh, flush-to-zero on GPUs): float32 to a few ulp per operation. On one
# backend, the same parameters give the same bits.
CROSS_BACKEND_RTOL = {"float32": 1e-5, "float64": 1e-12}


def _same_outputs(a, b, X, *, exact):
    out_a, out_b = host(a.feedforward(X)), host(b.feedforward(X))
    if exact:
        assert np.array_equal(out_a, out_b)
        assert np.array_equal(host(a.predict(X)), host(b.predict(X)))
        return
    rtol = CROSS_BACKEND_RTOL[a.spec.dtype]
    np.testing.assert_allclose(out_a, out_b, rtol=rtol, atol=rtol * np.abs(out_b).max())
    top2 = np.sort(out_b, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 10 * rtol  # a near-tie may flip either way
    assert np.array_equal(host(a.predict(X))[clear], host(b.predict(X))[clear])


def test_numpy_checkpoint_loads_on_every_backend(saved, trained, backend, blobs):
    X, _ = blobs
    back = gpumlp.load(saved, backend=backend)
    _assert_same(_params(back), _params(trained))
    _same_outputs(back, trained, X, exact=back.backend == "numpy")


def test_float64_round_trip_and_dtype_override(tmp_path):
    net = gpumlp.Network([4, 3], backend="numpy", seed=0, dtype="float64")
    net.save(tmp_path / "m.npz")
    back = gpumlp.load(tmp_path / "m.npz", backend="numpy")
    assert back.weights[0].dtype == np.float64
    _assert_same(_params(back), _params(net))
    assert gpumlp.load(tmp_path / "m.npz", backend="numpy", dtype="float32").weights[0].dtype == (
        np.float32
    )


def test_file_is_a_plain_npz_readable_without_cupy(saved, trained, monkeypatch):
    # CuPy is not needed to read a checkpoint: NumPy alone, without pickles, reads every array.
    with np.load(saved, allow_pickle=False) as npz:
        names = set(npz.files)
        meta = json.loads(bytes(npz["__meta__"]).decode("utf-8"))
        tensors = [npz[f"param/{i}"] for i in range(4)]
    assert names == {"__meta__", "param/0", "param/1", "param/2", "param/3"}
    assert meta["sizes"] == [4, 6, 3] and meta["format"] == ckpt_mod.FORMAT_VERSION
    _assert_same(tensors, _params(trained))
    monkeypatch.setitem(sys.modules, "cupy", None)  # any `import cupy` now fails
    _assert_same(_params(gpumlp.load(saved, backend="numpy")), _params(trained))


# -- foreign and damaged files ------------------------------------------------------------------


def test_newer_format_is_refused(trained, tmp_path, monkeypatch):
    path = tmp_path / "future.npz"
    monkeypatch.setattr(ckpt_mod, "FORMAT_VERSION", ckpt_mod.FORMAT_VERSION + 1)
    trained.save(path)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"future\.npz.*format 2.*upgrade gpumlp"):
        gpumlp.load(path)


def test_missing_file_and_directory(tmp_path, trained):
    with pytest.raises(FileNotFoundError, match=r"nothere\.npz"):
        gpumlp.load(tmp_path / "nothere.npz")
    (tmp_path / "adir.npz").mkdir()
    with pytest.raises(CheckpointError, match=r"adir\.npz.*is a directory"):
        gpumlp.load(tmp_path / "adir.npz")
    with pytest.raises(OSError):
        trained.save(tmp_path / "adir.npz")
    assert list((tmp_path / "adir.npz").iterdir()) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.npz", b""),
        ("text.npz", b"hello, not a zip\n"),
        ("other.npz", "npz without __meta__"),
        ("array.npy", "a bare .npy"),
    ],
)
def test_not_a_checkpoint(tmp_path, name, content):
    path = tmp_path / name
    if content == "npz without __meta__":
        np.savez(path, x=np.zeros(3))
    elif content == "a bare .npy":
        np.save(path, np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=name):
        gpumlp.load(path)


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(saved, tmp_path, keep):
    data = saved.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"cut\.npz"):
        gpumlp.load(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_flipped_byte_is_detected_or_harmless(saved, trained, tmp_path, data):
    # A byte changed anywhere either makes load fail with an error naming the file, or (in
    # parts of the zip that carry nothing, such as a local header's timestamp) leaves the very
    # same parameters: never silently different numbers.
    blob = bytearray(saved.read_bytes())
    i = data.draw(st.integers(0, len(blob) - 1), label="offset")
    blob[i] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(blob))
    try:
        back = gpumlp.load(path, backend="numpy")
    except CheckpointError as exc:
        assert str(path) in str(exc)
    else:
        _assert_same(_params(back), _params(trained))


def _central_entries(blob: bytes) -> list[int]:
    """Offsets of the zip's central directory headers."""
    found, i = [], blob.find(b"PK\x01\x02")
    while i != -1:
        found.append(i)
        i = blob.find(b"PK\x01\x02", i + 1)
    return found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (8, 0x01),  # general purpose flags: "encrypted" (zipfile: RuntimeError, needs password)
        (6, 0xFF),  # version needed to extract: 25.5 (zipfile: NotImplementedError)
        (10, 99),  # compression method: unknown (zipfile: NotImplementedError)
        (10, 8),  # compression method: deflate over stored bytes (zlib.error)
        (10, 12),  # bzip2 (OSError)
        (10, 14),  # lzma (LZMAError)
    ],
)
def test_damaged_zip_headers(saved, tmp_path, field, value):
    # Header bytes that make zipfile raise errors other than BadZipFile still give a
    # CheckpointError naming the file.
    blob = bytearray(saved.read_bytes())
    for entry in _central_entries(bytes(blob)):
        blob[entry + field] = value if field != 8 else blob[entry + field] | value
    path = tmp_path / "headers.npz"
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"headers\.npz"):
        gpumlp.load(path)


def test_damaged_file_is_closed(tmp_path):
    path = tmp_path / "t.npz"
    path.write_bytes(b"PK\x03\x04 and then nothing a zip needs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=r"t\.npz"):
            gpumlp.load(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_flipped_array_byte_fails_the_checksum(saved, tmp_path):
    # Rewrite one parameter with a changed value but a valid zip (fresh CRCs): only the
    # checkpoint's own digest can notice.
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param/0"] = arrays["param/0"].copy()
    arrays["param/0"][0, 0] += 1
    path = tmp_path / "tampered.npz"
    np.savez(path, **arrays)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
    with pytest.raises(CheckpointError, match=r"tampered\.npz.*checksum"):
        gpumlp.load(path)


# -- atomic writes ------------------------------------------------------------------------------


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomicio.os, "replace", broken_replace)
    with pytest.raises(OSError, match=r"No space"):
        atomic_write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temp file left


def test_atomic_write_gives_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x")
        assert (tmp_path / "new.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0o600
        (tmp_path / "mine.bin").write_bytes(b"x")
        (tmp_path / "mine.bin").chmod(0o640)
        atomic_write_bytes(tmp_path / "mine.bin", b"y")
        assert (tmp_path / "mine.bin").stat().st_mode & 0o777 == 0o640  # kept on replace
    finally:
        os.umask(old)


# -- resuming -----------------------------------------------------------------------------------

NET = dict(cost="cross_entropy", backend="numpy", seed=0)


def _fit(net, X, y, **kw):
    base = dict(batch_size=10, lr=0.5, seed=1, monitor=("train_cost", "val_accuracy"))
    return net.fit(X, y, **{**base, **kw})


def _columns(history) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


RESUME_CASES = {
    "sgd": {},
    "momentum": {"optimizer": "momentum", "lr": 0.2},
    "nesterov": {"optimizer": "nesterov", "lr": 0.2},
    "adam": {"optimizer": "adam", "lr": 0.02},
    "adam-dropout-l2": {"optimizer": "adam", "lr": 0.02, "dropout": 0.3, "l2": 0.5},
    "plateau": {"schedule": "plateau", "patience": 1},
    # lr = 2 reaches full validation accuracy in epoch 0, so epoch 1 is no better: the first
    # run ends holding epoch 0's weights as the best, which must not leak into the resume.
    "early-stopping": {"lr": 2.0, "patience": 5},
}


@pytest.mark.parametrize("case", RESUME_CASES)
def test_resume_matches_uninterrupted(blobs, tmp_path, case):
    X, y = blobs
    kw = {"validation_data": (X[::3], y[::3]), **RESUME_CASES[case]}
    whole = gpumlp.Network([4, 6, 3], **NET)
    h_whole = _fit(whole, X, y, epochs=4, **kw)

    path = tmp_path / "run.npz"
    first = gpumlp.Network([4, 6, 3], **NET)
    _fit(first, X, y, epochs=2, checkpoint=path, checkpoint_every=1, **kw)
    again = gpumlp.Network([4, 6, 3], **NET)
    h_again = _fit(again, X, y, epochs=4, resume=path, **kw)

    _assert_same(_params(again), _params(whole))
    assert _columns(h_again) == _columns(h_whole)
    assert h_again.stop_reason == h_whole.stop_reason
    if case == "early-stopping":
        acc = h_whole.column("val_accuracy")
        assert acc[1] <= acc[0]  # the situation described above did occur


def test_resume_after_interruption_with_cosine(blobs, tmp_path):
    # Cosine depends on the total number of epochs, so interrupt a 4-epoch run (Ctrl-C after
    # epoch 2) rather than finishing a 2-epoch one; the run rolls back to its last snapshot
    # and checkpoints it.
    X, y = blobs
    kw = dict(epochs=4, schedule="cosine", optimizer="adam", lr=0.05, dropout=0.2)
    whole = gpumlp.Network([4, 6, 3], **NET)
    h_whole = _fit(whole, X, y, **kw)

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    path = tmp_path / "run.npz"
    first = gpumlp.Network([4, 6, 3], **NET)
    with pytest.raises(KeyboardInterrupt) as info:
        _fit(first, X, y, checkpoint=path, on_epoch=interrupt, **kw)
    meta, _ = read_checkpoint(path)
    assert 1 <= meta["epoch"] <= 3
    assert isinstance(info.value, gpumlp.TrainingInterrupted)  # carries the finished epochs
    assert len(info.value.history) == meta["epoch"]
    assert meta["history"]["stop_reason"].startswith("interrupted")
    again = gpumlp.Network([4, 6, 3], **NET)
    h_again = _fit(again, X, y, resume=path, **kw)
    _assert_same(_params(again), _params(whole))
    assert _columns(h_again) == _columns(h_whole)
    assert h_again.stop_reason is None  # it finished this time


def test_resume_on_the_strict_backend(blobs, tmp_path):
    xps = pytest.importorskip("array_api_strict")
    X, y = blobs
    kw = dict(optimizer="momentum", lr=0.2)
    whole = gpumlp.Network([4, 6, 3], **{**NET, "backend": xps})
    _fit(whole, X, y, epochs=3, **kw)
    path = tmp_path / "run.npz"
    # One epoch on NumPy, with the generic step so that the arithmetic is the strict backend's.
    numpy_net = gpumlp.Network([4, 6, 3], **NET)
    _fit(numpy_net, X, y, epochs=1, checkpoint=path, engine="generic", **kw)
    again = gpumlp.Network([4, 6, 3], **{**NET, "backend": xps})
    _fit(again, X, y, epochs=3, resume=path, **kw)
    _assert_same(_params(again), _params(whole))


def test_resume_refuses_a_misfit(blobs, tmp_path, saved):
    X, y = blobs
    path = tmp_path / "run.npz"
    _fit(gpumlp.Network([4, 6, 3], **NET), X, y, epochs=1, checkpoint=path)
    other = gpumlp.Network([4, 5, 3], **NET)
    before = _params(other)
    with pytest.raises(CheckpointError, match=r"run.npz.*sizes=\[4, 6, 3\].*sizes=\[4, 5, 3\]"):
        _fit(other, X, y, epochs=2, resume=path)
    _assert_same(_params(other), before)
    net = gpumlp.Network([4, 6, 3], **NET)
    before = _params(net)
    with pytest.raises(CheckpointError, match=r"run\.npz.*optimizer='sgd', not 'adam'"):
        _fit(net, X, y, epochs=2, resume=path, optimizer="adam")
    _assert_same(_params(net), before)  # refused before anything was loaded
    with pytest.raises(CheckpointError, match=r"model\.npz.*not a resumable"):
        _fit(net, X, y, epochs=2, resume=saved)
    relu = gpumlp.Network([4, 6, 3], activation="relu", output_activation="sigmoid", **NET)
    with pytest.raises(CheckpointError, match=r"activation='sigmoid'"):
        _fit(relu, X, y, epochs=2, resume=path)


def test_training_checkpoint_loads_as_a_model(blobs, tmp_path):
    X, y = blobs
    path = tmp_path / "run.npz"
    net = gpumlp.Network([4, 6, 3], **NET)
    _fit(net, X, y, epochs=2, checkpoint=path, optimizer="adam", lr=0.02)
    _assert_same(_params(gpumlp.load(path, backend="numpy")), _params(net))


# -- the command line, killed with SIGKILL and resumed ------------------------------------------

EPOCHS = 4


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    # Batch size 1 makes an epoch take a fraction of a second: long enough to kill mid-epoch.
    return [
        sys.executable, "-m", "gpumlp", "train", "--data", str(data), "--backend", "numpy",
        "--sizes", "784,150,10", "--init", "scaled", "--batch-size", "1",
        "--epochs", str(EPOCHS), "--seed", "3", "--optimizer", "adam", "--lr", "0.002",
        "--dropout", "0.2", "--schedule", "cosine", "--checkpoint-every", "1",
        "--out", str(out), "--quiet", *extra,
    ]  # fmt: skip


def _model_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("param/")}


def test_cli_killed_and_resumed_matches_uninterrupted(tmp_path):
    data = tmp_path / "mnist.npz"
    write_tiny_mnist(data, 1200, 100)  # 1000 train, 200 validation
    # One BLAS thread: the runs share two cores, and the numbers must not depend on threading.
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref = subprocess.Popen(
        _train_cmd(data, ref_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    victim = subprocess.Popen(
        _train_cmd(data, run_dir), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        ckpt = run_dir / "checkpoint.npz"
        deadline = time.monotonic() + 60
        while not ckpt.exists():
            assert victim.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.01)
        meta, _ = read_checkpoint(ckpt)  # atomic: never seen half-written
        epoch_seconds = meta["history"]["epochs"][0]["seconds"]
        time.sleep(epoch_seconds / 2)  # into the middle of the next epoch
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        reap(victim)
    out, _ = ref.communicate(timeout=120)
    assert ref.returncode == 0, out.decode(errors="replace")

    # What the kill left: the last complete checkpoint, no model, nothing that looks valid but
    # is not (a write cut short stays a hidden .tmp file).
    assert not (run_dir / "model.npz").exists(), "the run finished before it was killed"
    meta, _ = read_checkpoint(ckpt)
    assert 1 <= meta["epoch"] < EPOCHS
    for leftover in run_dir.iterdir():
        name = leftover.name
        if name.endswith(".tmp"):
            assert name.startswith("."), name
        else:
            assert name == "checkpoint.npz" or not name.endswith(".npz"), name

    resumed = subprocess.run(
        _train_cmd(data, run_dir, "--resume", str(run_dir)),
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr.decode(errors="replace")
    got, want = _model_arrays(run_dir / "model.npz"), _model_arrays(ref_dir / "model.npz")
    assert sorted(got) == sorted(want) == [f"param/{i}" for i in range(4)]
    for k in want:
        assert np.array_equal(got[k], want[k]), k
    h_got = json.loads((run_dir / "history.json").read_text())
    h_want = json.loads((ref_dir / "history.json").read_text())
    assert _columns(h_got["epochs"]) == _columns(h_want["epochs"])
    assert len(h_got["epochs"]) == EPOCHS and h_got["stop_reason"] is None

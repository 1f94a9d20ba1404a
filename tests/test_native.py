"""The native CPU engine (``engine="native"``, :mod:`gpumlp.engines._native`): compiled once per
session and dtype into the session's cache (conftest's ``native_cache``), and checked against
the generic step:

- every (hidden activation, output activation, cost) with the optimizers in turn: an epoch of
  two full batches and a short last one in float64 within 1e-10 (parameters, optimizer buffers,
  the cost sum; the hits equal); penalties, dropout and two hidden layers, batch 1;
- float32 steps within the derived band (:mod:`helpers.stepcheck`);
- what it refuses (another backend, data read from disk or memory-mapped), the fallback of
  ``auto`` (no compiler, a failed compile), the build cache;
- a run records its engine and build, repeats bit for bit with ``--seed``, and a resumed run
  continues with the recorded engine or says why not.
"""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from gpumlp import engines
from gpumlp.costs import VALID_PAIRS
from gpumlp.engines import _native, _native_build, _native_src, select
from gpumlp.optim import OPTIMIZERS
from helpers.cli import PATIENCE, TRAIN_FLAGS, assert_refused, assert_same_run, run
from helpers.nets import HIDDEN
from helpers.stepcheck import compare_steps, epochs_against_generic, rel, setup

needs_compiler = pytest.mark.skipif(
    _native_build.compiler() is None, reason="no C++ compiler (g++, c++ or $CXX) on this machine"
)
COMBOS = [
    (h, o, c, OPTIMIZERS[i % len(OPTIMIZERS)])
    for i, (h, (o, c)) in enumerate(itertools.product(HIDDEN, VALID_PAIRS))
]


def _epochs(combo, dtype="float64", **kw):
    """The worst relative difference of the native and the generic engine after
    :func:`helpers.stepcheck.epochs_against_generic`'s epochs."""
    return epochs_against_generic("numpy", "native", combo, dtype, **kw)


@needs_compiler
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_an_epoch_matches_the_generic_epoch(combo):
    # 50 rows at batch 17: two full batches and a short last one (16 rows), in order and shuffled
    assert _epochs(combo, batch=17, epochs=2, sizes=(7, 13, 5)) <= 1e-10


@needs_compiler
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_penalties_dropout_two_hidden_layers_and_batch_one(optimizer):
    combo = ("tanh", "softmax", "cross_entropy", optimizer)
    fit = {"l2": 0.5, "l1": 0.2, "dropout": 0.3, "sizes": (7, 13, 9, 5)}
    assert _epochs(combo, batch=17, epochs=2, **fit) <= 1e-10
    assert _epochs(combo, batch=1, lr=0.05, **fit) <= 1e-10  # 50 steps of one row


@needs_compiler
def test_the_books_network_at_batch_10():
    combo = ("sigmoid", "sigmoid", "quadratic", "sgd")
    assert _epochs(combo, batch=10, lr=3.0, sizes=(784, 30, 10)) <= 1e-10


@needs_compiler
@pytest.mark.parametrize("combo", COMBOS[::2], ids=["-".join(c) for c in COMBOS[::2]])
def test_float32_steps_within_the_band(combo):
    # steps of 1, 17 and 2 rows from the same parameters, each within 2·C·u·κ
    compare_steps("float32", combo, "native", [1, 17, 2], sizes=(7, 13, 9, 5), backend="numpy",
                  l2=0.5, l1=0.2, dropout=0.3)  # fmt: skip


@needs_compiler
def test_a_step_on_an_explicit_batch_returns_its_outputs():
    combo = ("relu", "softmax", "log_likelihood", "adam")
    _, state, data = setup("numpy", "float64", combo, engine="native")
    _, ref_state, ref_data = setup("numpy", "float64", combo)
    step = engines.select_step(state, data, engine="native")
    ref = engines.select_step(ref_state, ref_data, engine="generic")
    a, a_ref = (
        step(data[0][:7], data[1][:7], 0.01, 3),
        ref(ref_data[0][:7], ref_data[1][:7], 0.01, 3),
    )
    assert a.shape == (7, 5) and rel(a_ref, a) <= 1e-12


@needs_compiler
def test_a_regression_fit_matches_the_generic_one():
    import gpumlp

    rng = np.random.default_rng(0)
    X = rng.random((53, 4))
    Y = X @ rng.random((4, 2))
    nets = [gpumlp.Network([4, 8, 2], output_activation="identity", backend="numpy", seed=0,
                           dtype="float64") for _ in range(2)]  # fmt: skip
    for net, engine in zip(nets, ("native", "generic"), strict=True):
        net.fit(X, Y, epochs=3, batch_size=10, lr=0.1, engine=engine, optimizer="momentum")
    for a, b in zip(nets[0].params.arrays(), nets[1].params.arrays(), strict=True):
        assert rel(b, a) <= 1e-10


@needs_compiler
@pytest.mark.parametrize("blas", [True, False], ids=["numpy-blas", "own-products"])
def test_auto_takes_native_where_it_was_measured_faster(blas, monkeypatch):
    if blas and _native_build.numpy_blas("float32") is None:
        pytest.skip("NumPy's BLAS has no ILP64 cblas_sgemm to call here")
    if not blas:
        monkeypatch.setattr(select, "numpy_blas", lambda dtype: None)
    combo = ("sigmoid", "sigmoid", "quadratic", "sgd")
    for sizes, batch, engine in [((784, 30, 10), 10, "native"), ((784, 30, 10), 100, "native"),
                                 ((784, 800, 10), 100, "native" if blas else "fused")]:  # fmt: skip
        _, state, data = setup("numpy", "float32", combo, sizes=sizes, batch=batch)
        assert engines.select_step(state, data, engine="auto").engine == engine, (sizes, batch)


@needs_compiler
@pytest.mark.parametrize("optimizer,penalty", [("sgd", 0.5), ("adam", 0.5), ("sgd", 0.0)])
def test_products_on_numpys_blas_match_the_generic_epoch(optimizer, penalty, monkeypatch):
    # plain SGD without penalties: BP4's BLAS call subtracts lr · δᵀx from W itself
    if _native_build.numpy_blas("float64") is None:
        pytest.skip("NumPy's BLAS has no ILP64 cblas_dgemm to call here")
    monkeypatch.setattr(_native, "BLAS_FROM", 1)  # every product through the BLAS
    combo = ("tanh", "softmax", "log_likelihood", optimizer)
    fit = {"l2": penalty, "l1": penalty / 2, "dropout": 0.3, "sizes": (7, 13, 9, 5)}
    assert _epochs(combo, batch=17, epochs=2, **fit) <= 1e-10


# -- what it refuses, and what auto does then -------------------------------------------------


def test_another_backend_is_refused_before_anything_is_built():
    strict = pytest.importorskip("array_api_strict")
    combo = ("sigmoid", "softmax", "log_likelihood", "sgd")
    _, state, data = setup(strict, "float64", combo, engine="native")
    with pytest.raises(ValueError, match="engine='native' needs the NumPy backend"):
        engines.check_engine(state.spec, "native")
    with pytest.raises(ValueError, match="engine='native' needs the NumPy backend"):
        engines.select_step(state, data)


@pytest.mark.parametrize("kind", ["memmap", "from_disk"])
def test_data_not_in_memory_is_refused_and_auto_trains_fused(kind, tmp_path, caplog):
    from gpumlp.files.npyview import open_rows

    combo = ("sigmoid", "softmax", "log_likelihood", "sgd")
    _, state, (X, Y, labels) = setup("numpy", "float64", combo, engine="native")
    np.save(tmp_path / "X.npy", np.asarray(X))
    if kind == "memmap":
        X = np.load(tmp_path / "X.npy", mmap_mode="r")
        why = "memory-mapped"
    else:
        X = open_rows(tmp_path / "X.npy")
        why = "from-disk"
    with pytest.raises(ValueError, match=why):
        engines.select_step(state, (X, Y, labels), engine="native")
    with caplog.at_level(logging.INFO, logger="gpumlp.engines.select"):
        step = engines.select_step(state, (X, Y, labels), engine="auto")
    assert step.engine == "fused" and why in caplog.text


def test_without_a_compiler_auto_trains_fused_and_native_says_why(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no g++, no c++
    combo = ("sigmoid", "softmax", "log_likelihood", "sgd")
    _, state, data = setup("numpy", "float32", combo)
    with caplog.at_level(logging.INFO, logger="gpumlp.engines.select"):
        assert engines.select_step(state, data, engine="auto").engine == "fused"
    assert "no C++ compiler" in caplog.text
    with pytest.raises(ValueError, match="engine='native' cannot run here: no C\\+\\+ compiler"):
        engines.select_step(state, data, engine="native")


@needs_compiler
def test_a_failed_compile_is_a_reason_not_a_crash(monkeypatch):
    with pytest.raises(_native_build.NativeUnavailable, match="did not compile"):
        _native_build.build("this is not C++;\n", "broken")


def test_the_command_refuses_native_with_from_disk_before_writing_anything(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.random((30, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(30) % 3)
    out = tmp_path / "run"
    code, _, stderr = run("train", "--data", tmp_path / "X.npy", "--labels", tmp_path / "y.npy",
                          "--from-disk", "--no-standardize", "--hidden", "5", "--engine",
                          "native", "--backend", "numpy", "--quiet", "--out", out)  # fmt: skip
    assert_refused(code, stderr, r"--engine native: X is read from its file batch by batch")
    assert not out.exists()


def test_the_command_refuses_native_that_cannot_build_before_writing_anything(
    tmp_path, monkeypatch
):
    failing = tmp_path / "cxx"
    failing.write_text("#!/bin/sh\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CXX", str(failing))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing cached
    rng = np.random.default_rng(0)
    np.save(tmp_path / "X.npy", rng.random((30, 4)).astype(np.float32))
    np.save(tmp_path / "y.npy", np.arange(30) % 3)
    out = tmp_path / "run"
    code, stdout, stderr = run("train", "--data", tmp_path / "X.npy", "--labels",
                               tmp_path / "y.npy", "--hidden", "5", "--engine", "native",
                               "--backend", "numpy", "--quiet", "--out", out)  # fmt: skip
    why = r"the native source did not compile with .*cxx: it exited with 1 and said nothing"
    assert_refused(code, stderr, rf"engine='native' cannot run here: {why}; use auto or fused")
    assert stdout == "" and not out.exists()


# -- the build cache --------------------------------------------------------------------------
@needs_compiler
def test_a_library_cut_short_in_the_cache_is_built_again_not_loaded(native_cache):
    source = _native_src.native_source("float64") + "\n// cut short by this test\n"
    code = (
        "import sys; from gpumlp.engines import _native_build as b;"
        "made = b.build(sys.stdin.read(), 'cut'); print(made.path, made.lib.gpumlp_epoch_sgd)"
    )

    def build() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], input=source, capture_output=True,
                              text=True, timeout=PATIENCE)  # fmt: skip

    first = build()
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.split()[0])
    whole = path.read_bytes()
    with open(path, "r+b") as f:  # damaged in place, as a full disk or a crash would leave it
        f.truncate(len(whole) // 3)
    again = build()  # before: a SIGBUS in dlopen (exit -7)
    assert again.returncode == 0, again.stderr
    assert path.read_bytes() == whole


def test_the_library_is_built_once_into_the_cache_by_concurrent_builders(native_cache):
    source = _native_src.native_source("float64") + "\n// a source of this test alone\n"
    made, errors = [], []

    def build():
        try:
            made.append(_native_build.build(source, "test"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    folder = _native_build.cache_dir()
    assert folder.is_relative_to(native_cache)
    built = sorted(p.name for p in folder.glob("*.so") if "-test-" in p.name)
    assert len(built) == 1 and all(m.path.name == built[0] for m in made)
    assert not [p for p in folder.iterdir() if p.name.startswith(".build-")]  # no temp left
    assert made[0].info["flags"] == list(_native_build.FLAGS)
    assert "-ffast-math" not in _native_build.FLAGS


# -- runs: recorded, repeated, resumed --------------------------------------------------------


def _train(data, out, *extra):
    code, _, stderr = run("train", "--data", data, *TRAIN_FLAGS, "--backend", "numpy",
                          "--out", out, *extra)  # fmt: skip
    assert code == 0, stderr
    return json.loads((out / "history.json").read_text()), stderr


@needs_compiler
def test_a_run_records_its_engine_and_repeats_bit_for_bit(bar_mnist, tmp_path):
    first, _ = _train(bar_mnist, tmp_path / "a", "--engine", "native")
    _train(bar_mnist, tmp_path / "b", "--engine", "native")
    assert_same_run(tmp_path / "b", tmp_path / "a")
    (entry,) = first["engines"]
    assert entry["engine"] == "native" and entry["from_epoch"] == 0
    assert entry["build"]["flags"] == list(_native_build.FLAGS)
    assert json.loads((tmp_path / "a" / "args.json").read_text())["engine"] == "native"


@needs_compiler
def test_a_resumed_run_continues_with_its_engine_or_says_why(bar_mnist, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _train(bar_mnist, out, "--engine", "native", "--epochs", "1")
    args = json.loads((out / "args.json").read_text())
    (out / "args.json").write_text(json.dumps(args | {"engine": "auto", "epochs": 2}))
    both = tmp_path / "whole"
    _train(bar_mnist, both, "--engine", "native")
    resumed, _ = _train(bar_mnist, out, "--resume", out, "--epochs", "2")
    assert [e["engine"] for e in resumed["engines"]] == ["native"]
    assert_same_run(out, both)  # the recorded engine, so the same bits as one run
    # where it cannot be built, the run says so and goes on with fused
    (out / "args.json").write_text(json.dumps(args | {"engine": "auto", "epochs": 3}))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(_native_build, "_LOADED", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    again, stderr = _train(bar_mnist, out, "--resume", out, "--epochs", "3")
    assert "trained with engine 'native'" in stderr and "continuing with 'fused'" in stderr
    assert "no C++ compiler" in stderr
    assert [(e["engine"], e["from_epoch"]) for e in again["engines"]] == [
        ("native", 0),
        ("fused", 2),
    ]

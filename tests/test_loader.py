"""Tests for gpumlp.loader: a saved model or training checkpoint loads as a ``Network`` on every
backend, with the file's exact parameters, the same outputs (to rounding across backends), and
its dtype or an override; nothing is allocated from what a file's metadata claims."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gpumlp
from gpumlp import memory, model
from gpumlp.files.checkpoint import CheckpointError
from helpers.bad_files import resigned
from helpers.nets import CE_NET, assert_same_params, fit_run, host, params_of


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
        # the file's bytes: exact on every backend
        assert_same_params(params_of(back), params_of(net))
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


def test_numpy_checkpoint_loads_on_every_backend(saved, fitted, backend, blobs):
    X, _ = blobs
    back = gpumlp.load(saved, backend=backend)
    assert_same_params(params_of(back), params_of(fitted))
    _same_outputs(back, fitted, X, exact=back.backend == "numpy")


def test_float64_round_trip_and_dtype_override(tmp_path):
    net = gpumlp.Network([4, 3], backend="numpy", seed=0, dtype="float64")
    net.save(tmp_path / "m.npz")
    back = gpumlp.load(tmp_path / "m.npz", backend="numpy")
    assert back.weights[0].dtype == np.float64
    assert_same_params(params_of(back), params_of(net))
    assert gpumlp.load(tmp_path / "m.npz", backend="numpy", dtype="float32").weights[0].dtype == (
        np.float32
    )


def test_training_checkpoint_loads_as_a_model(blobs, tmp_path):
    X, y = blobs
    path = tmp_path / "run.npz"
    net = gpumlp.Network([4, 6, 3], **CE_NET)
    fit_run(net, X, y, epochs=2, checkpoint=path, optimizer="adam", lr=0.02)
    assert_same_params(params_of(gpumlp.load(path, backend="numpy")), params_of(net))


@pytest.mark.parametrize("drop", [False, True], ids=["small-arrays", "no-arrays"])
def test_nothing_is_allocated_from_what_the_metadata_claims(tmp_path, monkeypatch, drop):
    # A file claiming sizes=[784, 3000000, 10] (9 GB) beside the arrays of a small network, or
    # none: its stored arrays are checked first, so it is refused for them, even where the
    # memory free would allow the claim, and nothing is drawn, created or allocated for it.
    gpumlp.Network([784, 30, 10], backend="numpy", seed=0).save(tmp_path / "m.npz")
    resigned(tmp_path / "m.npz", tmp_path / "claims.npz",
             lambda meta: meta | {"sizes": [784, 3_000_000, 10]},
             (lambda arrays: {}) if drop else None)  # fmt: skip
    monkeypatch.setattr(memory, "host_available_memory", lambda: 1 << 40)

    def no(*args, **kwargs):
        raise AssertionError("allocated from the metadata")

    def small(shape, *args, real=np.empty, **kwargs):  # what a reader would fill from a claim
        if np.prod(shape) > 1_000_000:
            no()
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(model, "init_params", no)
    monkeypatch.setattr(np, "empty", small)
    gist = "lacks parameter 'param/0'" if drop else "array 'param/0' has shape (30, 784)"
    with pytest.raises(CheckpointError, match=re.escape(gist)):
        gpumlp.load(tmp_path / "claims.npz", backend="numpy")

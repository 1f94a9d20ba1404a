"""Tests for gpumlp.runstate: a run resumed from its checkpoint replays the uninterrupted run
bit for bit (every optimizer, dropout and L2, the plateau schedule, early stopping, the strict
backend), and a checkpoint of another network or optimizer is refused before anything loads."""

from __future__ import annotations

import pytest

import gpumlp
from gpumlp.files.checkpoint import CheckpointError
from helpers.nets import CE_NET, assert_same_params, fit_run, history_columns, params_of

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
    whole = gpumlp.Network([4, 6, 3], **CE_NET)
    h_whole = fit_run(whole, X, y, epochs=4, **kw)

    path = tmp_path / "run.npz"
    first = gpumlp.Network([4, 6, 3], **CE_NET)
    fit_run(first, X, y, epochs=2, checkpoint=path, checkpoint_every=1, **kw)
    again = gpumlp.Network([4, 6, 3], **CE_NET)
    h_again = fit_run(again, X, y, epochs=4, resume=path, **kw)

    assert_same_params(params_of(again), params_of(whole))
    assert history_columns(h_again) == history_columns(h_whole)
    assert h_again.stop_reason == h_whole.stop_reason
    if case == "early-stopping":
        acc = h_whole.column("val_accuracy")
        assert acc[1] <= acc[0]  # the situation described above did occur


def test_resume_on_the_strict_backend(blobs, tmp_path):
    xps = pytest.importorskip("array_api_strict")
    X, y = blobs
    kw = dict(optimizer="momentum", lr=0.2)
    whole = gpumlp.Network([4, 6, 3], **{**CE_NET, "backend": xps})
    fit_run(whole, X, y, epochs=3, **kw)
    path = tmp_path / "run.npz"
    # One epoch on NumPy, with the generic step so that the arithmetic is the strict backend's.
    numpy_net = gpumlp.Network([4, 6, 3], **CE_NET)
    fit_run(numpy_net, X, y, epochs=1, checkpoint=path, engine="generic", **kw)
    again = gpumlp.Network([4, 6, 3], **{**CE_NET, "backend": xps})
    fit_run(again, X, y, epochs=3, resume=path, **kw)
    assert_same_params(params_of(again), params_of(whole))


def test_resume_refuses_a_misfit(blobs, tmp_path, saved):
    X, y = blobs
    path = tmp_path / "run.npz"
    fit_run(gpumlp.Network([4, 6, 3], **CE_NET), X, y, epochs=1, checkpoint=path)
    other = gpumlp.Network([4, 5, 3], **CE_NET)
    before = params_of(other)
    with pytest.raises(CheckpointError, match=r"run.npz.*sizes=\[4, 6, 3\].*sizes=\[4, 5, 3\]"):
        fit_run(other, X, y, epochs=2, resume=path)
    assert_same_params(params_of(other), before)
    net = gpumlp.Network([4, 6, 3], **CE_NET)
    before = params_of(net)
    with pytest.raises(CheckpointError, match=r"run\.npz.*optimizer='sgd', not 'adam'"):
        fit_run(net, X, y, epochs=2, resume=path, optimizer="adam")
    assert_same_params(params_of(net), before)  # refused before anything was loaded
    with pytest.raises(CheckpointError, match=r"model\.npz.*not a resumable"):
        fit_run(net, X, y, epochs=2, resume=saved)
    relu = gpumlp.Network([4, 6, 3], activation="relu", output_activation="sigmoid", **CE_NET)
    with pytest.raises(CheckpointError, match=r"activation='sigmoid'"):
        fit_run(relu, X, y, epochs=2, resume=path)

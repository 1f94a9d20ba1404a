"""Tests for gpumlp.train.train_network: a run stopped short by Ctrl-C rolls back to its last
finished epoch, checkpoints it, raises TrainingInterrupted carrying the history, and resumes to
what an uninterrupted run gives; an epoch already shown to ``on_epoch`` is never rolled back.
So too when the data file read as training goes is cut short (DataFileShrank).
(Ctrl-C and kill -9 of ``gpumlp train`` are in test_cli_train.py; divergence in test_train.py;
memory running out in test_memory.py.)"""

from __future__ import annotations

import os

import numpy as np
import pytest

import gpumlp
from gpumlp.files.checkpoint import read_checkpoint
from gpumlp.files.npyview import open_rows
from helpers.nets import CE_NET, assert_same_params, fit_run, history_columns, params_of


def test_resume_after_interruption_with_cosine(blobs, tmp_path):
    # Cosine depends on the total number of epochs, so interrupt a 4-epoch run (Ctrl-C after
    # epoch 2) rather than finishing a 2-epoch one; the run rolls back to its last snapshot
    # and checkpoints it.
    X, y = blobs
    kw = dict(epochs=4, schedule="cosine", optimizer="adam", lr=0.05, dropout=0.2)
    whole = gpumlp.Network([4, 6, 3], **CE_NET)
    h_whole = fit_run(whole, X, y, **kw)

    def interrupt(record):
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    path = tmp_path / "run.npz"
    first = gpumlp.Network([4, 6, 3], **CE_NET)
    with pytest.raises(KeyboardInterrupt) as info:
        fit_run(first, X, y, checkpoint=path, on_epoch=interrupt, **kw)
    meta, _ = read_checkpoint(path)
    assert 1 <= meta["epoch"] <= 3
    assert isinstance(info.value, gpumlp.TrainingInterrupted)  # carries the finished epochs
    assert len(info.value.history) == meta["epoch"]
    assert meta["history"]["stop_reason"].startswith("interrupted")
    again = gpumlp.Network([4, 6, 3], **CE_NET)
    h_again = fit_run(again, X, y, resume=path, **kw)
    assert_same_params(params_of(again), params_of(whole))
    assert history_columns(h_again) == history_columns(h_whole)
    assert h_again.stop_reason is None  # it finished this time


@pytest.mark.parametrize("shown", [0, 2])
def test_an_interrupt_after_an_epoch_is_shown_keeps_that_epoch(blobs, tmp_path, shown):
    # The interrupt message and the resumed run count from the last epoch line shown: the
    # epoch reported to on_epoch (and printed) is the last one kept and checkpointed.
    X, y = blobs

    def interrupt(record):
        if record["epoch"] == shown:
            raise KeyboardInterrupt

    path = tmp_path / "run.npz"
    net = gpumlp.Network([4, 6, 3], **CE_NET)
    with pytest.raises(gpumlp.TrainingInterrupted) as info:
        fit_run(net, X, y, epochs=5, checkpoint=path, on_epoch=interrupt)
    assert [r["epoch"] for r in info.value.history] == list(range(shown + 1))
    assert info.value.history.stop_reason == f"interrupted during epoch {shown + 1}"
    assert read_checkpoint(path)[0]["epoch"] == shown + 1
    ref = gpumlp.Network([4, 6, 3], **CE_NET)
    fit_run(ref, X, y, epochs=shown + 1)
    assert_same_params(params_of(net), params_of(ref))


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_data_file_cut_short_stops_at_the_last_finished_epoch(blobs, tmp_path, shuffle):
    # X read from its .npy file as training goes, cut short once epoch 1 is shown: fit raises
    # DataFileShrank carrying the finished epochs, and the network and the checkpoint hold the
    # weights of an uninterrupted 2-epoch run.
    X, y = blobs[0].astype(np.float32), blobs[1]
    np.save(tmp_path / "X.npy", X)
    size = (tmp_path / "X.npy").stat().st_size
    whole = gpumlp.Network([4, 6, 3], **CE_NET)
    # the engine a file read as training goes gets (native takes X in memory only)
    fit_run(whole, X, y, epochs=2, shuffle=shuffle, engine="fused")

    def cut(record):
        if record["epoch"] == 1:
            os.truncate(tmp_path / "X.npy", 200)

    path, net = tmp_path / "run.npz", gpumlp.Network([4, 6, 3], **CE_NET)
    rows = open_rows(tmp_path / "X.npy")
    with pytest.raises(gpumlp.DataFileShrank) as info:
        fit_run(net, rows, y, epochs=5, shuffle=shuffle, checkpoint=path, on_epoch=cut)
    assert str(info.value) == (
        f"{tmp_path / 'X.npy'} shrank from {size:,} to 200 bytes during training; epochs 0..1 "
        f"saved to {path}"
    )
    assert [r["epoch"] for r in info.value.history] == [0, 1]
    assert_same_params(params_of(net), params_of(whole))
    assert read_checkpoint(path)[0]["epoch"] == 2

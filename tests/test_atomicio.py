"""Tests for gpumlp.atomicio: a failed write keeps the old file and leaves no temp file, new
files get a plain file's mode, and a disk that fills up mid-checkpoint keeps the previous
checkpoint whole. (The command line on a full disk is in test_cli_train.py.)"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import gpumlp
from conftest import DiskFull, temp_files
from gpumlp import atomicio
from gpumlp.atomicio import atomic_write_bytes
from gpumlp.checkpoint import read_checkpoint


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


def test_disk_full_mid_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    X = np.random.default_rng(0).random((40, 4))
    y = np.arange(40) % 3
    ckpt = tmp_path / "checkpoint.npz"
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0)
    full = DiskFull(monkeypatch, ".checkpoint.npz.", after=1)
    with pytest.raises(OSError) as info:
        net.fit(X, y, epochs=4, batch_size=8, lr=0.5, checkpoint=ckpt, checkpoint_every=1)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and full.seen == 2
    meta, _ = read_checkpoint(ckpt)  # the one written after epoch 0, intact
    assert meta["epoch"] == 1
    assert temp_files(tmp_path) == []

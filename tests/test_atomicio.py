"""Tests for gpumlp.atomicio: a failed write keeps the old file and leaves no temp file, new
files get a plain file's mode (never a setuid bit, never what a symlink pointed at; the MNIST
cache too), a killed fetch's temp file is removed by the next, and a disk that fills up
mid-checkpoint keeps the previous checkpoint whole. (The command line on a full disk is in
test_cli_train.py; run folders' files in test_rundir.py.)"""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

import gpumlp
from gpumlp import atomicio
from gpumlp.atomicio import atomic_write_bytes
from gpumlp.files.checkpoint import read_checkpoint
from helpers.cli import dead_pid, run
from helpers.faults import DiskFull, temp_files


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


def test_a_replaced_symlink_or_setuid_file_gives_its_mode_to_nothing(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"x")
    target.chmod(0o4777)
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "setuid").write_bytes(b"x")
    (tmp_path / "setuid").chmod(0o4750)
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "link", b"new")
        atomic_write_bytes(tmp_path / "setuid", b"new")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "link").lstat().st_mode) == 0o640  # the umask's, not 4777
    assert target.read_bytes() == b"x" and stat.S_IMODE(target.stat().st_mode) == 0o4777
    assert stat.S_IMODE((tmp_path / "setuid").stat().st_mode) == 0o750


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["022", "077"])
def test_the_mnist_cache_gets_the_umask_mode_and_killed_fetches_are_cleaned(
    umask, mirror, tmp_path
):
    cache = tmp_path / "cache"  # the mirror fixture's
    cache.mkdir()
    killed = cache / f".mnist.pkl.gz.{dead_pid()}.abc123.part"  # a fetch killed mid-way
    live = cache / f".mnist.pkl.gz.{os.getppid()}.abc123.part"  # a live one's: left alone
    for path in (killed, live):
        path.write_bytes(b"half")
    old = os.umask(umask)
    try:
        code, _, stderr = run("data", "fetch")
    finally:
        os.umask(old)
    assert code == 0, stderr
    path = cache / "mnist.pkl.gz"
    assert path.read_bytes() == mirror.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert not killed.exists() and live.exists()

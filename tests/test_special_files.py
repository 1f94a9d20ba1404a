"""Only regular files in and out (issue 28, serious cases 2 to 4): a run folder's lock is never
written through a symbolic link or onto a FIFO; a model or checkpoint is never written over a
device, FIFO or socket; and a FIFO given as data, checkpoint or table is refused at once instead
of hanging the reader. Each read runs in a thread with a generous limit, so a regression fails
the test instead of hanging the suite."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading

import numpy as np
import pytest

from gpumlp import CheckpointError, Network
from gpumlp.data.csvread import read_csv
from gpumlp.data.formats import data_format
from gpumlp.data.images import read_digit
from gpumlp.data.tabular import read_npy_pair
from gpumlp.files.checkpoint import read_checkpoint
from gpumlp.runs.runlock import lock_folder

PATIENCE = 600  # seconds; the right answer comes at once, a hang would wait forever


def _returns(fn, *args):
    """Run ``fn(*args)`` in a thread; its exception (or None) once it returns. Fails when it
    has not returned within PATIENCE seconds (a reader blocked on a FIFO)."""
    out: list[BaseException | None] = []

    def target():
        try:
            fn(*args)
            out.append(None)
        except BaseException as exc:  # handed to the test
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(PATIENCE)
    assert not thread.is_alive(), f"{fn.__name__} blocked on a FIFO"
    return out[0]


def _lock(folder):
    with lock_folder(folder):
        pass


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").symlink_to(target)
    exc = _returns(_lock, run)
    assert isinstance(exc, ValueError) and "is a symbolic link" in str(exc), exc
    assert target.read_text() == "keep me" and (run / ".lock").is_symlink()


def test_a_lock_that_is_a_fifo_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / ".lock")
    exc = _returns(_lock, tmp_path)
    assert isinstance(exc, ValueError) and "is a FIFO, not a regular file" in str(exc), exc
    assert stat.S_ISFIFO((tmp_path / ".lock").lstat().st_mode)


def _special(tmp_path, kind):
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    else:
        path.mkdir()
    return path


@pytest.mark.parametrize(("kind", "words"), [("fifo", "a FIFO"), ("socket", "a socket"),
                                             ("folder", "a directory")])  # fmt: skip
def test_a_model_is_never_written_over_a_special_file(tmp_path, kind, words):
    path = _special(tmp_path, kind)
    before = path.lstat()
    net = Network([3, 4, 2], backend="numpy", seed=0)
    with pytest.raises((ValueError, IsADirectoryError), match=words.split()[-1]):
        net.save(path)
    after = path.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert [p.name for p in tmp_path.iterdir()] == [kind]  # no temp file left either


def test_a_checkpoint_is_never_written_over_a_fifo(tmp_path):
    fifo = _special(tmp_path, "fifo")
    rng = np.random.default_rng(0)
    X, y = rng.random((20, 3)), rng.integers(2, size=20)
    net = Network([3, 4, 2], backend="numpy", seed=0)
    with pytest.raises(ValueError, match="is a FIFO, not a regular file"):
        net.fit(X, y, epochs=1, checkpoint=fifo)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.parametrize(
    ("reader", "exc_type"),
    [
        (data_format, ValueError),
        (read_csv, ValueError),
        (lambda p: read_npy_pair(p, p), ValueError),
        (read_checkpoint, CheckpointError),
        (read_digit, ValueError),
    ],
    ids=["data", "csv", "npy", "checkpoint", "image"],
)
def test_a_fifo_given_to_read_is_refused_at_once(tmp_path, reader, exc_type):
    fifo = _special(tmp_path, "fifo")
    exc = _returns(reader, fifo)
    assert isinstance(exc, exc_type) and "is a FIFO, not a regular file" in str(exc), exc


@pytest.mark.parametrize(
    "content", [b"[" * 4000, b"\xff\xfe", b"[1, 2]"], ids=["deep", "bytes", "list"]
)
def test_a_lock_file_holding_no_record_is_taken_like_an_empty_one(tmp_path, content):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_bytes(content)  # deep: json's RecursionError escaped the lock check
    with lock_folder(run):  # taken, with this process's record in it
        assert json.loads((run / ".lock").read_bytes())["pid"] == os.getpid()

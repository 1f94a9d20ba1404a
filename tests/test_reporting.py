"""Tests for gpumlp.reporting, what a run shows: ``fit`` quiet by default, Keras-style epoch
lines for ``verbose=1``/``2`` named like the History's keys, the per-batch bar only on a
terminal (a real pseudo-terminal, in a subprocess), ``Network.summary()`` and ``repr``."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest

import gpumlp
from gpumlp.reporting import epoch_line
from helpers.cli import PATIENCE, gpumlp_env, reap
from helpers.nets import assert_same_params, params_of

# -- fit: quiet by default, a line per epoch when verbose ----------------------------------------


def test_fit_prints_nothing_by_default(blobs, capsys):
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], backend="numpy", seed=0)
    net.fit(X, y, epochs=2, lr=0.5, validation_data=(X, y))
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("verbose", "scored"), [(1, "validation"), (2, "test"), (True, "test")])
def test_verbose_prints_a_keras_style_line_per_epoch_on_stdout(blobs, capsys, verbose, scored):
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], backend="numpy", seed=0)
    history = net.fit(
        X, y, epochs=3, lr=0.5, validation_data=(X[::2], y[::2]), scored=scored, verbose=verbose
    )
    out, err = capsys.readouterr()
    p = "val" if scored == "validation" else "test"
    want = [
        f"Epoch {r['epoch']}: train_cost {r['train_cost']:.4f} - {p}_cost {r['val_cost']:.4f}"
        f" - {p}_accuracy {r['val_accuracy']:.4f} ({r['seconds']:.2f} s)"
        for r in history
    ]
    assert out.splitlines() == want and len(want) == 3
    assert err == ""  # no bar: stdout is not a terminal here


@pytest.mark.parametrize("verbose", [3, -1, "yes", None])
def test_bad_verbose_is_refused_before_training(blobs, verbose):
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], backend="numpy", seed=0)
    before = params_of(net)
    with pytest.raises(ValueError, match=r"verbose must be 0, 1 or 2, got"):
        net.fit(X, y, epochs=1, verbose=verbose)
    assert_same_params(params_of(net), before)


_FIT_ON_A_TERMINAL = """
import numpy as np, gpumlp
rng = np.random.default_rng(0)
X, y = rng.random((60, 4)), rng.integers(0, 3, 60)
gpumlp.Network([4, 5, 3], backend="numpy", seed=0).fit(X, y, epochs=2, verbose={verbose})
"""


def _on_a_terminal(code: str) -> str:
    """Run ``code`` in a Python whose stdout is a pseudo-terminal; what it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24×100
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=follower, stderr=subprocess.PIPE, env=gpumlp_env()
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        os.close(leader)
        reap(proc)
    assert proc.returncode == 0, err.decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_the_progress_bar_shows_only_on_a_terminal():
    shown = _on_a_terminal(_FIT_ON_A_TERMINAL.format(verbose=1))
    assert re.search(r"epoch 0: .*\d+/6 .*batch", shown), shown  # the tqdm bar, 6 batches
    assert "Epoch 1: train_cost " in shown
    lines_only = _on_a_terminal(_FIT_ON_A_TERMINAL.format(verbose=2))
    assert "batch" not in lines_only and "Epoch 1: train_cost " in lines_only


def test_a_huge_cost_is_shown_in_e_notation():
    record = {"epoch": 6, "train_cost": 410.87, "val_cost": 1.677e38, "seconds": 0.01}
    assert epoch_line(record) == "Epoch 6: train_cost 410.8700 - val_cost 1.677e+38 (0.01 s)"
    record["val_accuracy"] = 0.5
    assert "(cost 1.677e+38, 0.01 s)" in epoch_line(record, scored="test", n_scored=2)


# -- summary and repr ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "kw"),
    [
        ([784, 30, 10], {}),
        ([4, 5, 3], {"output_activation": "softmax", "cost": "log_likelihood"}),
        ([20, 300, 200, 2], {"activation": "relu", "dtype": "float64"}),
    ],
)
def test_summary_lists_layers_shapes_parameters_dtype_and_backend(sizes, kw):
    net = gpumlp.Network(sizes, backend="numpy", seed=0, **kw)
    text = net.summary()
    lines = text.splitlines()
    n_params = sum(t.size for t in params_of(net))
    assert lines[0].split() == ["layer", "units", "weights", "biases", "activation", "parameters"]
    assert lines[1].split() == ["input", f"{sizes[0]:,}"]
    for l, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        act = net.output_activation if l == len(sizes) - 2 else net.activation
        want = [str(l + 1), f"{w.shape[0]:,}", *str(w.shape).split(), f"({b.shape[0]},)", act]
        assert lines[2 + l].split() == [*want, f"{w.size + b.size:,}"]
    assert lines[-1].startswith(f"{n_params:,} parameters ({net.spec.dtype}, ")
    assert f") on numpy; cost {net.cost.name}; inputs as given" in lines[-1]
    assert len(lines) == len(sizes) + 2


def test_repr_shows_the_network_briefly():
    net = gpumlp.Network([4, 5, 3], backend="numpy", seed=0, output_activation="softmax")
    text = repr(net)
    assert text.startswith("Network([4, 5, 3], activation='sigmoid', output_activation='softmax'")
    assert "dtype='float32'" in text and "backend='numpy'" in text
    assert f"params={sum(t.size for t in params_of(net))})" in text
    assert "\n" not in text

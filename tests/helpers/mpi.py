"""MPI jobs for the tests: MPICH's ``mpiexec`` from its installed wheel, jobs of ``gpumlp``
commands or of :mod:`helpers.mpi_fit`, and the reference a P = 2 run must equal bit for bit."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpumlp import Network
from gpumlp.config import TrainConfig
from gpumlp.distributed import local_rows
from gpumlp.dropout import keep_masks
from gpumlp.network import Params, backprop
from gpumlp.optim import apply_update, regularize
from gpumlp.runstate import TrainState
from helpers.cli import PATIENCE, gpumlp_env

FIT = Path(__file__).with_name("mpi_fit.py")


def mpiexec() -> str:
    """The ``mpiexec`` the ``mpich`` wheel installed (not whatever PATH finds); skips the test
    with the reason when the wheel or mpi4py is missing."""
    try:
        import mpi4py  # noqa: F401

        files = importlib.metadata.distribution("mpich").files or []
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        pytest.skip(f"needs gpumlp[mpi] (mpi4py and the mpich wheel): {exc}")
    # pip's RECORD names it relative to site-packages (../../../bin/mpiexec), or, installed
    # with --target (scripts/gpu_check.sh), beside the package in bin/
    places = [Path(str(f.locate())) for f in files if f.name == "mpiexec"]
    places.append(Path(str(importlib.metadata.distribution("mpich").locate_file("bin/mpiexec"))))
    found = [p.resolve() for p in places if p.is_file()]
    if not found:
        pytest.skip(f"the mpich wheel's mpiexec is not in any of {[str(p) for p in places]}")
    return str(found[0])


def job(n: int, command: list[str]) -> list[str]:
    """``mpiexec -n N COMMAND...`` (Hydra's own launcher for this host, as root too)."""
    return [mpiexec(), "-n", str(n), *command]


def run_job(n: int, command: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run ``command`` on ``n`` ranks to its end (``gpumlp_env``: one BLAS thread a rank, the
    NumPy backend; ``env`` on top)."""
    return subprocess.run(job(n, command), env=gpumlp_env() | env, capture_output=True,
                          text=True, timeout=PATIENCE)  # fmt: skip


def start_job(n: int, command: list[str], **popen) -> subprocess.Popen:
    """Start ``command`` on ``n`` ranks; ``reap`` it in a finally."""
    return subprocess.Popen(job(n, command), env=gpumlp_env(), **popen)


def fit_job(out: Path, *mode: str) -> list[str]:
    """:mod:`helpers.mpi_fit` writing each configuration's parameters into ``out`` (``mode``:
    ``--alone`` or ``--reference``, for one process)."""
    return [sys.executable, str(FIT), str(out), *mode]


def fit_alone(out: Path, mode: str, **env: str) -> None:
    """:mod:`helpers.mpi_fit` in one process (``--alone`` or ``--reference``), to its end."""
    done = subprocess.run(fit_job(out, mode), env=gpumlp_env() | env, capture_output=True,
                          text=True, timeout=PATIENCE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def two_parts(net: Network, X, y, *, seed: int, **fit) -> Params:
    """One process doing what two ranks do: each global batch cut at ``local_rows`` into two
    parts, each part's gradient (its sums ÷ the global batch's rows, its rows of the step's
    dropout masks) computed alone, the two summed in rank order, then the penalties and the
    update; ``net``'s parameters after ``fit``'s epochs (constant rate)."""
    cfg = TrainConfig(**fit)
    state = TrainState.start(net.spec, net.params, cfg, np.random.default_rng(seed))
    spec, xp, params = net.spec, net.xp, net.params
    X, Y, _ = net.inputs.data(X, y)
    n, bs = X.shape[0], cfg.batch_size
    for epoch in range(cfg.epochs):
        perm = state.rng.permutation(n)
        for b, k in enumerate(range(0, n, bs)):
            rows = perm[k : k + bs]
            parts = []
            for rank in (0, 1):
                lo, hi = local_rows(len(rows), rank, 2)
                keep = None
                if cfg.dropout:
                    keep = keep_masks(state.dropout_key, epoch * (-(-n // bs)) + b, hi - lo,
                                      spec.hidden_widths, cfg.dropout, xp=xp,
                                      dtype=spec.xp_dtype, first=lo)  # fmt: skip
                idx = rows[lo:hi]
                g, _ = backprop(params, X[idx], Y[idx], activations=spec.activations,
                                cost=spec.cost, xp=xp, keep=keep, rows=len(rows))  # fmt: skip
                parts.append(g)
            grads = Params.from_arrays(
                [a + b for a, b in zip(parts[0].arrays(), parts[1].arrays(), strict=True)]
            )
            if cfg.l2 or cfg.l1:
                grads = regularize(grads, params, l2=cfg.l2, l1=cfg.l1, n=n, xp=xp)
            apply_update(state.optimizer, params, grads, state.opt_state, lr=cfg.lr, xp=xp)
    return params

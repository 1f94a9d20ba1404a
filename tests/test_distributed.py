"""gpumlp.distributed: one network trained by several MPI ranks.

The everyday tests check the pieces in one process (the ranks' parts of a batch, a part's
dropout masks and gradient, the single-process communicator, the engines refused; on the CUDA
emulation, the CuPy fused step on one rank's parts against the generic step). Those
marked ``mpi`` start real jobs with MPICH's ``mpiexec`` (two ranks, one BLAS thread each):
every configuration of :mod:`helpers.mpi_fit` in one launch against one process and against
one process summing the two parts (:func:`helpers.mpi.two_parts`), the command line
interrupted and resumed, a rank killed, ranks that do not start alike; with ``gpu`` too, the
same on CuPy (host staging, and NCCL where a machine has two GPUs).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from gpumlp import Network, engines
from gpumlp.backend import cupy_module, cupy_status
from gpumlp.config import ModelSpec
from gpumlp.distributed import LocalComm, local_rows
from gpumlp.dropout import keep_masks
from gpumlp.engines.select import check_engine
from gpumlp.network import backprop
from helpers.cli import (
    PATIENCE,
    UNTIL_STOPPED,
    descendants,
    gpumlp_cmd,
    reap,
    saved_params,
    wait_until,
)
from helpers.mpi import fit_alone, fit_job, run_job, start_job
from helpers.mpi_fit import CONFIGS, SCORES
from helpers.nets import on_namespace_of
from helpers.stepcheck import N, rel, setup, state_tensors

# -- one process --------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2, 7, 100, 101])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_the_ranks_parts_cover_a_batch_in_order_and_differ_by_at_most_one(m, size):
    parts = [local_rows(m, r, size) for r in range(size)]
    assert parts[0][0] == 0 and parts[-1][1] == m
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_a_parts_dropout_masks_are_those_rows_of_the_steps_masks():
    whole = keep_masks(5, 9, 10, [6, 4], 0.4, xp=np, dtype=np.float64)
    part = keep_masks(5, 9, 3, [6, 4], 0.4, xp=np, dtype=np.float64, first=4)
    for w, p in zip(whole, part, strict=True):
        np.testing.assert_array_equal(p, w[4:7])


def test_the_parts_gradients_over_the_global_rows_add_up_to_the_batchs():
    net = Network([5, 4, 3], dtype="float64", seed=0, backend="numpy")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 5)), np.eye(3)[rng.integers(3, size=9)]
    kw = dict(activations=net.spec.activations, cost=net.cost, xp=np)
    whole, _ = backprop(net.params, x, y, **kw)
    a, _ = backprop(net.params, x[:4], y[:4], rows=9, **kw)
    b, _ = backprop(net.params, x[4:], y[4:], rows=9, **kw)
    for w, pa, pb in zip(whole.arrays(), a.arrays(), b.arrays(), strict=True):
        np.testing.assert_allclose(pa + pb, w, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("engine", ["generic", "fused"])
def test_fit_with_the_one_process_communicator_is_a_plain_fit(engine):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(205, 6)), rng.integers(3, size=205)
    kw = dict(epochs=2, batch_size=20, lr=0.3, seed=4, dropout=0.2, l2=1.0, engine=engine)
    plain = Network([6, 8, 5, 3], seed=1, backend="numpy", dtype="float64")
    ranked = Network([6, 8, 5, 3], seed=1, backend="numpy", dtype="float64")
    h1 = plain.fit(X, y, **kw)
    h2 = ranked.fit(X, y, **kw, comm=LocalComm())
    for a, b in zip(plain.params.arrays(), ranked.params.arrays(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert h1.records[-1]["train_cost"] == h2.records[-1]["train_cost"]


@pytest.mark.parametrize("engine", ["graph", "persistent", "native"])
def test_whole_epoch_engines_are_refused_under_a_communicator_with_the_reason(engine):
    spec = ModelSpec.build([4, 3, 2], backend="numpy")
    with pytest.raises(ValueError, match=f"--distributed: engine='{engine}' runs whole epochs"):
        check_engine(spec, engine, distributed=True)
    check_engine(spec, "fused", distributed=True)  # the per-step engines run
    check_engine(spec, "auto", distributed=True)


def test_auto_takes_the_fused_step_under_a_communicator():
    """Not native, which auto takes in a NumPy process alone where it builds."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 6)), rng.integers(3, size=40)
    kw = dict(epochs=1, batch_size=10, lr=0.3, seed=4)
    ranked = Network([6, 5, 3], seed=1, backend="numpy").fit(X, y, **kw, comm=LocalComm())
    assert [e["engine"] for e in ranked.engines] == ["fused"]


class _Rank:
    """Rank ``rank`` of two whose partner adds nothing: a step then takes this rank's part of
    each global batch alone, divided by the global batch's rows (the collectives are no-ops)."""

    size, name = 2, "test"

    def __init__(self, rank):
        self.rank = rank

    def allreduce(self, buf):
        pass

    def bcast(self, obj):
        return obj


@pytest.mark.parametrize("rank", [0, 1])
def test_the_cupy_fused_step_takes_a_ranks_part_as_the_generic_step_does(fake_cupy, rank):
    """Batch 7 over 50 rows: parts of 3 and 4 rows, and a last batch of one row, rank 0's part
    empty; dropout masks from the part's first row, L2, momentum."""
    combo = ("sigmoid", "softmax", "log_likelihood", "momentum")
    fit = dict(batch=7, dropout=0.3, l2=0.5)
    _, ref_state, ref_data = setup("numpy", "float64", combo, **fit)
    _, state, data = setup("cupy", "float64", combo, engine="fused", **fit)
    ref_state.comm, state.comm = _Rank(rank), _Rank(rank)
    ref = engines.select_step(ref_state, ref_data, engine="generic")
    step = engines.select_step(state, data)  # auto: the fused step under a communicator
    assert step.engine == "fused"
    perm = np.random.default_rng(1).permutation(N)
    monitor = ("train_cost", "train_accuracy")
    for epoch in range(2):
        cost_ref, hits_ref = ref.epoch(perm, 0.3, epoch * 8, monitor=monitor)
        cost, hits = step.epoch(on_namespace_of(perm, data), 0.3, epoch * 8, monitor=monitor)
        assert int(hits) == int(hits_ref)
        assert float(cost) == pytest.approx(float(cost_ref), rel=1e-12)
        for r, g in zip(state_tensors(ref_state), state_tensors(state), strict=True):
            assert rel(r, g) < 1e-12
    x, y = ref_data[0][:4], ref_data[1][:4]  # an explicit part: rows 3..6 of a batch of 9
    a_ref = ref(x, y, 0.3, 5, part=(3, 9))
    a = step(on_namespace_of(x, data), on_namespace_of(y, data), 0.3, 5, part=(3, 9))
    assert rel(a_ref, a) < 1e-12
    for r, g in zip(state_tensors(ref_state), state_tensors(state), strict=True):
        assert rel(r, g) < 1e-12
    assert "flat" not in vars(step.core.reducer)  # the core sums its own buffer: none made here


# -- MPI jobs -----------------------------------------------------------------------------------


def _loaded(path, what="p"):
    """A run's parameters (``what="p"``) or last epoch's scores (``"h"``), in order."""
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: (len(k), k)) if k[0] == what]


@pytest.mark.mpi
def test_two_ranks_train_as_one_process_and_as_the_sum_of_the_two_parts(tmp_path):
    done = run_job(2, fit_job(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    fit_alone(tmp_path, "--alone")
    fit_alone(tmp_path, "--reference")
    for name, cfg in CONFIGS.items():
        r0, r1 = _loaded(tmp_path / f"{name}-0.npz"), _loaded(tmp_path / f"{name}-1.npz")
        alone = _loaded(tmp_path / f"{name}-alone.npz")
        reference = _loaded(tmp_path / f"{name}-reference.npz")
        tol = 1e-12 if cfg["dtype"] == "float64" else 1e-5
        for p0, p1, p, ref in zip(r0, r1, alone, reference, strict=True):
            np.testing.assert_array_equal(p0, p1, err_msg=f"{name}: the ranks differ")
            # lr 0.5 is exact, so the fused step's rate folded into δ changes no bit either
            np.testing.assert_array_equal(p0, ref, err_msg=f"{name}: not the two-part sum")
            np.testing.assert_allclose(p0, p, rtol=tol, atol=tol * np.abs(p).max(),
                                       err_msg=f"{name}: not one process's")  # fmt: skip
        # the scores: the ranks' sums added (training), rank 0's sent (validation)
        h0, h1 = _loaded(tmp_path / f"{name}-0.npz", "h"), _loaded(tmp_path / f"{name}-1.npz", "h")
        assert h0 == h1, name
        one = dict(zip(SCORES, _loaded(tmp_path / f"{name}-alone.npz", "h"), strict=True))
        for key, value in zip(SCORES, h0, strict=True):
            assert value == pytest.approx(one[key], rel=1e-4, abs=2e-4), (name, key)


@pytest.mark.mpi
def test_one_rank_under_mpiexec_trains_as_a_plain_process(tmp_path):
    done = run_job(1, fit_job(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    fit_alone(tmp_path, "--alone")
    for name in CONFIGS:
        for p, q in zip(_loaded(tmp_path / f"{name}-0.npz"),
                        _loaded(tmp_path / f"{name}-alone.npz"), strict=True):  # fmt: skip
            np.testing.assert_array_equal(p, q, err_msg=name)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """X.npy and y.npy: 4,000 examples of 20 features in two classes."""
    folder = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 20)).astype("float32")
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", (X[:, 0] + X[:, 1] > 0).astype(np.int64))
    return ["--data", folder / "X.npy", "--labels", folder / "y.npy", "--quiet"]


FLAGS = ["--distributed", "--batch-size", "10", "--seed", "5", "--dropout", "0.1"]


@pytest.mark.mpi
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_job_resumes_at_two_ranks_bit_for_bit(tmp_path, table, signum):
    # The job has 100,000 epochs: it cannot end before the signal, however loaded the machine.
    # Resumed to two epochs past where it stopped, it ends as an uninterrupted job of as many.
    cut = tmp_path / "cut"
    out = tmp_path / "cut.txt"
    with out.open("w") as sink:
        argv = ["train", *table, *FLAGS, "--epochs", UNTIL_STOPPED, "--out", cut]
        proc = start_job(2, gpumlp_cmd(*argv), stdout=sink, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: "Epoch 1:" in out.read_text(), "epoch 1's line", proc)
            proc.send_signal(signum)  # mpiexec sends it on to every rank
            _, err = proc.communicate(timeout=PATIENCE)
        finally:
            reap(proc)
    assert proc.returncode == 128 + signum, err
    assert "resume with: mpiexec -n 2 gpumlp train --distributed --resume" in err
    finished = len(json.loads((cut / "history.json").read_text())["epochs"])
    assert 2 <= finished < UNTIL_STOPPED
    target = str(finished + 2)
    resume = ["train", "--resume", cut, "--distributed", "--quiet", "--epochs", target]
    done = run_job(2, gpumlp_cmd(*resume))
    assert done.returncode == 0, done.stderr[-3000:]
    whole = tmp_path / "whole"
    done = run_job(2, gpumlp_cmd("train", *table, *FLAGS, "--epochs", target, "--out", whole))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 ranks (mpi)" in done.stdout
    a, b = saved_params(whole / "model.npz"), saved_params(cut / "model.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.mpi
def test_a_killed_rank_ends_the_job_with_a_failure(tmp_path, table):
    out = tmp_path / "out.txt"
    argv = ["train", *table, *FLAGS, "--epochs", "1000", "--out", tmp_path / "run"]
    with out.open("w") as sink:
        proc = start_job(2, gpumlp_cmd(*argv), stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: "Epoch 0:" in out.read_text(), "epoch 0's line", proc)
            ranks = [p for p in descendants(proc.pid)
                     if b"gpumlp" in open(f"/proc/{p}/cmdline", "rb").read()]  # fmt: skip
            assert len(ranks) == 2, ranks
            os.kill(ranks[-1], signal.SIGKILL)
            proc.wait(timeout=120)  # a patience, not a timing: MPICH ends the job at once
        finally:
            reap(proc)
    assert proc.returncode != 0
    assert "BAD TERMINATION" in out.read_text()


@pytest.mark.mpi
def test_ranks_that_start_from_other_parameters_are_refused_on_every_rank(tmp_path):
    code = (
        "import numpy as np\n"
        "from gpumlp import Network\n"
        "from gpumlp.distributed import world\n"
        "comm = world()\n"
        "net = Network([4, 3, 2], seed=comm.rank, backend='numpy')\n"
        "X = np.zeros((8, 4)); y = np.zeros(8, dtype=int)\n"
        "try:\n"
        "    net.fit(X, y, epochs=1, batch_size=4, comm=comm)\n"
        "except ValueError as exc:\n"
        f"    open(f'{tmp_path}/{{comm.rank}}.txt', 'w').write(str(exc))\n"
    )
    done = run_job(2, [sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr[-3000:]
    said = [(tmp_path / f"{rank}.txt").read_text() for rank in (0, 1)]
    assert all("rank(s) 1 start from other parameters" in text for text in said), said


@pytest.mark.mpi
def test_train_distributed_refuses_a_whole_epoch_engine_and_ends_the_job(tmp_path, table):
    done = run_job(2, gpumlp_cmd("train", *table, *FLAGS, "--engine", "graph", "--out",
                                 tmp_path / "run"))  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "gpumlp: error: --distributed: engine='graph' runs whole epochs" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.mpi
@pytest.mark.gpu
@pytest.mark.parametrize("nccl", ["0", "1"], ids=["host-staging", "nccl"])
def test_two_ranks_on_cupy_train_as_one_process(tmp_path, nccl):
    usable, reason = cupy_status()
    if not usable:
        pytest.skip(reason)
    if nccl == "1":
        from gpumlp.distributed.nccl import nccl_status

        ok, why = nccl_status()
        if not ok or cupy_module().cuda.runtime.getDeviceCount() < 2:
            pytest.skip(f"NCCL needs a GPU per rank, two here: {why or 'one GPU'}")
    env = {"GPUMLP_BACKEND": "cupy", "GPUMLP_NCCL": nccl}
    done = run_job(2, fit_job(tmp_path), **env)
    assert done.returncode == 0, done.stderr[-3000:]
    fit_alone(tmp_path, "--alone", **env)
    for name, cfg in CONFIGS.items():
        r0, r1 = _loaded(tmp_path / f"{name}-0.npz"), _loaded(tmp_path / f"{name}-1.npz")
        tol = 1e-12 if cfg["dtype"] == "float64" else 1e-5
        for p0, p1, p in zip(r0, r1, _loaded(tmp_path / f"{name}-alone.npz"), strict=True):
            np.testing.assert_array_equal(p0, p1, err_msg=f"{name}: the ranks differ")
            np.testing.assert_allclose(p0, p, rtol=tol, atol=tol * np.abs(p).max(),
                                       err_msg=f"{name}: not one process's")  # fmt: skip

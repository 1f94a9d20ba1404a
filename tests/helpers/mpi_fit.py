"""Run under ``mpiexec`` (or alone): train each of :data:`CONFIGS` for one epoch of
:func:`problem`'s 10,000 examples at batch 100, with ``comm=world()``, and write each rank's
parameters (and the epoch's :data:`SCORES`) to ``OUT/<config>-<rank>.npz``. ``--alone``: one
process, no communicator, into ``<config>-alone.npz``; ``--reference``: one process doing
what two ranks do (:func:`helpers.mpi.two_parts`), into ``<config>-reference.npz``.

``python mpi_fit.py OUT [--alone | --reference]``
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))  # the tests folder: helpers importable

from gpumlp import Network
from gpumlp.backend import to_host
from gpumlp.distributed import select_device, world

SIZES = [20, 16, 12, 4]
CONFIGS = {
    "sgd-float64-fused": dict(dtype="float64", optimizer="sgd", engine="fused"),
    "sgd-float32-fused": dict(dtype="float32", optimizer="sgd", engine="fused"),
    "sgd-float64-generic": dict(dtype="float64", optimizer="sgd", engine="generic"),
    "sgd-float32-generic": dict(dtype="float32", optimizer="sgd", engine="generic"),
    # named engines: auto takes native alone and fused under a communicator
    "momentum-l2-float64-fused": dict(
        dtype="float64", optimizer="momentum", l2=5.0, engine="fused"
    ),
    "momentum-l2-float32-generic": dict(
        dtype="float32", optimizer="momentum", l2=5.0, engine="generic"
    ),
    "adam-dropout-float64-generic": dict(
        dtype="float64", optimizer="adam", dropout=0.3, engine="generic", lr=0.01
    ),
    "adam-dropout-l2-float32-fused": dict(
        dtype="float32", optimizer="adam", dropout=0.3, l2=2.0, engine="fused", lr=0.01
    ),
    # 10,001 rows: the last global batch has one row, which rank 1 takes alone
    "sgd-dropout-l2-ragged-float64-generic": dict(
        dtype="float64", dropout=0.2, l2=1.0, engine="generic", n=10_001
    ),
}


SCORES = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")
"""The last epoch's scores each run writes beside its parameters (``h_<name>``)."""


def problem(n: int = 10_000, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples of 20 features in 4 classes (a fixed random problem; another ``seed``
    draws other examples of it)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, SIZES[0]))
    y = np.argmax(X[:, :4] + 0.5 * rng.normal(size=(n, 4)), axis=1)
    return X, y


BACKEND = os.environ.get("GPUMLP_BACKEND", "numpy")
"""The backend the configurations train on (the tests' environment says NumPy)."""


def network(cfg: dict) -> Network:
    """The network a configuration trains, at its initial parameters."""
    return Network(SIZES, dtype=cfg["dtype"], seed=3, backend=BACKEND)


def fit_settings(cfg: dict) -> dict:
    """``Network.fit``'s settings of a configuration (one epoch at batch 100)."""
    rest = {k: v for k, v in cfg.items() if k not in ("dtype", "n")}
    return {"epochs": 1, "batch_size": 100, "lr": 0.5, "seed": 11, "monitor": SCORES} | rest


def main() -> None:
    out, mode = Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "--ranks"
    comm = world() if mode == "--ranks" else None
    if comm is not None and BACKEND == "cupy":
        select_device(comm)
    for name, cfg in CONFIGS.items():
        net, data, fit = network(cfg), problem(cfg.get("n", 10_000)), fit_settings(cfg)
        if mode == "--reference":
            from helpers.mpi import two_parts

            fit.pop("engine", None)
            fit.pop("monitor")
            params, scores = two_parts(net, *data, **fit), {}
        else:
            params = net.params
            val = problem(500, seed=8)
            history = net.fit(*data, validation_data=val, **fit, comm=comm)
            scores = {f"h_{k}": np.float64(history.records[-1][k]) for k in SCORES}
        arrays = {f"p{i}": to_host(t) for i, t in enumerate(params.arrays())} | scores
        tag = mode.removeprefix("--") if comm is None else comm.rank
        np.savez(out / f"{name}-{tag}.npz", **arrays)


if __name__ == "__main__":
    main()

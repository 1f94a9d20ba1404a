"""Parity: train one network on two backends (or two dtypes) and compare them, step by step.

Both sides start from the same host-drawn weights (``init_params`` with ``--seed``) and see the
same host-drawn mini-batches, so any difference is arithmetic. Four phases are compared:

``start``
    Per layer ``z`` and ``a`` of the forward pass and the gradients (``Network.gradients``) on a
    probe of the first 100 training examples.
``steps``
    Weights, biases and the batch output after each of the first ``--steps`` training steps. The
    steps are the real ones from :func:`gpumlp.train.select_step`: the reference side runs
    ``generic``, the other side ``--engine`` (so on CuPy its fast path is what is compared).
``epochs``
    After each epoch of ``Network.fit(seed=--seed)`` from the same starting weights (same seed,
    same host permutation): weights, train cost and test accuracy.
``final``
    Cost on the test set after the last epoch.

Error measure and tolerances
----------------------------
For a tensor, ``rel = max|a − b| / max|ref|`` (the ∞-norm error relative to the tensor's scale;
elementwise ratios blow up at entries near 0). After step ``k`` (``start`` is step 0, an epoch
ends at step ``epoch × n_batches``) it must satisfy ``rel ≤ tol × (1 + k)``: each step adds about
one step's rounding, and linear growth allows for that, while a real bug shows up as an error of
order 1 in the step where it happens.

- float64: ``tol = 1e-12``. One step is a few hundred flops per value (dot products of length
  ≤ 784, then elementwise ops), each off by ≤ 2^-53 ≈ 1.1e-16; summation order differs between
  BLAS libraries, so errors of 1e-15..1e-14 are normal and 1e-12 leaves headroom.
- float32: ``tol = 1e-5`` (≈ 80 ulp of 2^-23): a few ulp per elementwise op plus √k growth in
  the length-k dot products.
- Two dtypes (``--dtypes float64 float32``): the float64 side is the reference and the float32
  tolerance applies (the float32 side's own rounding is what is measured).

Over thousands of steps, SGD amplifies rounding differences chaotically. On MNIST with the book's
settings, a 1e-16 relative change of the float64 initial weights grows to 2e-5 after one epoch
(5,000 steps) and 7e-2 after two; float32 vs float64 differs by 1e-1 after one epoch. So
epoch-level weights and costs are reported, marked ``info``, but not judged by the linear rule.
Epoch-level agreement is judged on test accuracy, example by example: ``b`` examples only the
reference classifies correctly, ``c`` only the other. The accuracies agree when
``|b − c| = |Δ correct| ≤ max(3, 3√(b + c))``, a 3σ sign (McNemar) test: a near-tie flips an
argmax either way without any bug, while a systematic loss shows as ``b ≫ c``. Identical
arithmetic gives ``b = c = 0``.

The last compared step uses the epoch's shorter last batch when ``n`` is not a multiple of the
batch size, so that shape (its own CUDA graph in the ``graph`` engine) is compared too.

CuPy runs with TF32 off (``CUPY_TF32=0`` and the float32 GEMM compute type set to plain FP32),
since TF32 rounds GEMM inputs to 10 mantissa bits and would swamp float32 parity.

The command line is ``gpumlp parity`` (:mod:`gpumlp.cli.parity`).
"""

from __future__ import annotations

import math
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from .. import backend
from .._version import __version__
from ..backend import Array
from ..config import TrainConfig
from ..engines.select import select_step
from ..engines.steps import Step
from ..model import Network
from ..network import forward
from ..runstate import TrainState

__all__ = ["PROBE", "TOLERANCES", "accuracy_band", "compare", "synthetic"]

Host = np.ndarray[Any, Any]
Split = tuple[Host, Host]
T = TypeVar("T")

TOLERANCES = {"float64": 1e-12, "float32": 1e-5}
"""Relative tolerance per training step, by the looser dtype of the two sides (module docstring)."""

PROBE = 100
"""Training examples in the ``start`` probe."""


def accuracy_band(disagreements: int) -> float:
    """Largest allowed ``|Δ correct|`` when the two sides classify ``b + c`` examples differently
    and exactly one of them is right (module docstring)."""
    return max(3.0, 3.0 * math.sqrt(disagreements))


class _Tally:
    """Per (phase, tensor): the worst errors seen and the first step beyond tolerance."""

    def __init__(self, tol: float) -> None:
        self.tol = tol
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def _row(self, phase: str, name: str, judged: bool) -> dict[str, Any]:
        return self.rows.setdefault(
            (phase, name),
            {"phase": phase, "tensor": name, "max_abs": 0.0, "max_rel": 0.0, "worst_ratio": 0.0}
            | {"first_exceeded": None, "checks": 0, "judged": judged},
        )

    def tensor(
        self, phase: str, name: str, ref: Any, other: Any, step: int, judged: bool = True
    ) -> None:
        """Compare two tensors (any backend) after ``step``."""
        ref = np.asarray(backend.to_host(ref), dtype=np.float64)
        other = np.asarray(backend.to_host(other), dtype=np.float64)
        with np.errstate(invalid="ignore"):
            err = float(np.max(np.abs(ref - other), initial=0.0))
        scale = float(np.max(np.abs(ref), initial=0.0))
        rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
        if not np.array_equal(np.isfinite(ref), np.isfinite(other)) or math.isnan(err):
            err = rel = math.inf  # NaN or inf on one side only, or in different places
        self._update(phase, name, err, rel, rel / (self.tol * (1 + step)), step, judged)

    def accuracy(self, phase: str, name: str, ref: Any, other: Any, labels: Any, step: int) -> None:
        """Compare two sides' predicted classes (host int arrays) against ``labels``."""
        b = int(np.sum((ref == labels) & (other != labels)))
        c = int(np.sum((ref != labels) & (other == labels)))
        band = accuracy_band(b + c)
        self._update(phase, name, abs(b - c), abs(b - c) / len(labels), abs(b - c) / band, step)
        row = self.rows[(phase, name)]
        row["only_ref_right"], row["only_other_right"], row["band"] = b, c, band
        row["accuracy"] = [float(np.mean(ref == labels)), float(np.mean(other == labels))]

    def _update(
        self, phase: str, name: str, err: float, rel: float, ratio: float, step: int,
        judged: bool = True,
    ) -> None:  # fmt: skip
        row = self._row(phase, name, judged)
        row["checks"] += 1
        row["max_abs"] = max(row["max_abs"], err)
        row["max_rel"] = max(row["max_rel"], rel)
        row["worst_ratio"] = max(row["worst_ratio"], ratio)
        if ratio > 1 and judged and row["first_exceeded"] is None:
            row["first_exceeded"] = step

    def first(self) -> dict[str, Any] | None:
        bad = [r for r in self.rows.values() if r["first_exceeded"] is not None]
        if not bad:
            return None
        order = ("start", "steps", "epochs", "final")
        r = min(bad, key=lambda r: (r["first_exceeded"], order.index(r["phase"])))
        return {"phase": r["phase"], "step": r["first_exceeded"], "tensor": r["tensor"]}


def synthetic(n: int, n_test: int, sizes: list[int], seed: int) -> tuple[Split, Split]:
    """Sparse inputs in [0, 1) (two thirds zeros, like MNIST's pixels) near random class
    prototypes, labelled by a fixed teacher network: one linear layer scoring the squared
    distance to each prototype (``x·p − ½‖p‖²``), whose argmax is the label (2 classes when
    there is one output unit). Seeded apart from the weights, so ``--seed`` moves both."""
    rng = np.random.default_rng([seed, 1])
    k = max(2, sizes[-1])

    def sparse(shape: tuple[int, int]) -> Host:
        return rng.random(shape) * (rng.random(shape) < 0.2)

    proto = sparse((k, sizes[0]))
    X = 0.3 * proto[rng.integers(k, size=n + n_test)] + 0.7 * sparse((n + n_test, sizes[0]))
    y = np.argmax(X @ proto.T - 0.5 * np.sum(proto * proto, axis=1), axis=1)
    return (X[:n], y[:n]), (X[n:], y[n:])


def compare(
    sides: Sequence[tuple[str, Any, str]], data: tuple[Split, Split], *, config: dict[str, Any]
) -> dict[str, Any]:
    """Run both sides (two ``(name, xp, dtype)``) on the host data ``((X, y), (X_test,
    y_test))`` with ``config`` (the settings named as ``gpumlp parity``'s flags); the report."""
    (X, y), (X_test, y_test) = data
    ref = 1 if sides[0][2] == "float32" and sides[1][2] == "float64" else 0
    tol = TOLERANCES["float32" if any(s[2] == "float32" for s in sides) else "float64"]
    tally = _Tally(tol)
    n, bs, seed = X.shape[0], config["batch_size"], config["seed"]
    n_batches = -(-n // bs)
    net_kw = {k: config[k] for k in ("activation", "output_activation", "cost", "init")}
    fit_kw = {k: config[k] for k in ("lr", "optimizer", "momentum", "l2")}

    def make(i: int) -> Network:
        _, xp, dtype = sides[i]
        return Network(config["sizes"], **net_kw, dtype=dtype, backend=xp, seed=seed)

    def engine_for(i: int) -> str:  # the reference runs plain xp code; the other is under test
        return "generic" if i == ref else config["engine"]

    def pair(fn: Callable[[int], T]) -> tuple[T, T]:  # (reference's result, other's)
        out = [fn(0), fn(1)]
        return out[ref], out[1 - ref]

    # -- start: forward per layer and gradients on a probe --------------------------------------
    nets = [make(0), make(1)]
    probe_x, probe_y = X[:PROBE], y[:PROBE]

    def start(i: int) -> tuple[list[Array], list[Array], list[Array], list[Array]]:
        net = nets[i]
        x = net.inputs.x(probe_x)
        zs, acts, _ = forward(net.params, x, activations=net.spec.activations, xp=net.xp)
        gw, gb = net.gradients(probe_x, probe_y)
        return zs, acts[1:], gw, gb

    r, o = pair(start)
    for l in range(len(r[0])):
        for k, label in enumerate(("z", "a", "grad w", "grad b")):
            tally.tensor("start", f"{label}[{l}]", r[k][l], o[k][l], 0)

    # -- steps: the real training step on the same host-drawn batches ---------------------------
    def stepper(i: int) -> tuple[Network, Step]:
        net = nets[i]
        cfg = TrainConfig(epochs=1, batch_size=bs, engine=engine_for(i), **fit_kw)
        state = TrainState.start(net.spec, net.params, cfg, np.random.default_rng(seed))
        return net, select_step(state, net.inputs.data(X, y))

    steppers = [stepper(i) for i in range(2)]
    engines = [str(step.label) for _, step in steppers]  # steps say what they are
    order_rng = np.random.default_rng([seed, 2])
    perm = np.empty(0, dtype=np.int64)
    for k in range(1, config["steps"] + 1):
        m = n % bs if k == config["steps"] and n % bs else min(bs, n)  # short last (docstring)
        if perm.size < m:
            perm = order_rng.permutation(n)
        idx, perm = perm[:m], perm[m:]

        def one(i: int, idx: Host = idx, k: int = k) -> tuple[list[Host], Host]:
            net, step = steppers[i]
            x = net.inputs.x(X[idx])
            a = step(x, net.inputs.targets(y[idx], len(idx))[0], fit_kw["lr"], k)
            return [backend.to_host(t) for t in net.params.arrays()], backend.to_host(a)

        (rp, ra), (op, oa) = pair(one)
        for j, (rt, ot) in enumerate(zip(rp, op, strict=True)):
            tally.tensor("steps", f"{'wb'[j % 2]}[{j // 2}]", rt, ot, k)
        tally.tensor("steps", "out", ra, oa, k)

    # -- epochs: Network.fit from the same weights with the same seed ---------------------------
    def fitted(i: int) -> tuple[list[tuple[dict[str, Any], list[Host], Host]], dict[str, float]]:
        net = make(i)
        seen: list[tuple[dict[str, Any], list[Host], Host]] = []

        def on_epoch(rec: dict[str, Any]) -> None:
            weights = [backend.to_host(t).copy() for t in net.params.arrays()]
            seen.append((dict(rec), weights, backend.to_host(net.predict(X_test))))

        net.fit(
            X, y, epochs=config["epochs"], batch_size=bs, seed=seed, engine=engine_for(i),
            monitor=("train_cost",), on_epoch=on_epoch, **fit_kw,
        )  # fmt: skip
        return seen, net.evaluate(X_test, y_test)

    (rseen, rfinal), (oseen, ofinal) = pair(fitted)
    for e, ((rrec, rw, rpred), (orec, ow, opred)) in enumerate(zip(rseen, oseen, strict=True)):
        at = (e + 1) * n_batches
        for j, (rt, ot) in enumerate(zip(rw, ow, strict=True)):
            tally.tensor("epochs", f"{'wb'[j % 2]}[{j // 2}]", rt, ot, at, judged=False)
        tally.tensor("epochs", "train_cost", rrec["train_cost"], orec["train_cost"], at, False)
        tally.accuracy("epochs", "test_acc", rpred, opred, np.asarray(y_test), at)
    total = config["epochs"] * n_batches
    tally.tensor("final", "test_cost", rfinal["cost"], ofinal["cost"], total, judged=False)

    first = tally.first()
    return {
        "verdict": "agree" if first is None else "mismatch",
        "first_exceeded": first,
        "backends": [s[0] for s in sides],
        "dtypes": [s[2] for s in sides],
        "reference": sides[ref][0] + " " + sides[ref][2],
        "engines": engines,
        "config": config | {"n": n, "n_test": int(X_test.shape[0]), "n_batches": n_batches},
        "tolerances": {
            "rel_per_step": tol,
            "rule": "max|a-b|/max|ref| <= rel_per_step * (1 + step)",
            "epoch_tensors": "reported, not judged (chaotic growth, see module docstring)",
            "accuracy_band": "|b - c| <= max(3, 3 sqrt(b + c)) (b, c: examples only one side "
            "gets right)",
        },
        "final": {"reference": rfinal, "other": ofinal},
        "tensors": list(tally.rows.values()),
        "versions": _versions(sides),
    }


def _versions(sides: Sequence[tuple[str, Any, str]]) -> dict[str, str]:
    v = {"gpumlp": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for name, _, _ in sides:
        if name not in ("numpy", "cupy"):
            v[name] = getattr(sys.modules.get(name), "__version__", "?")
        if name == "cupy":
            v |= backend.cuda_info()
    return v

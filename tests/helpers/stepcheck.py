"""One training step of a fast engine against :class:`gpumlp.engines.steps.GenericStep`, from
the same parameters, within a tolerance derived from the step's rounding errors.

Used by ``test_cupy_fast.py`` (the kernels on the CPU emulation, IEEE and GPU-like rounding),
``test_cupy_gpu.py`` (the kernels on a GPU), and the native, persistent and distributed tests
(``test_native.py``, ``test_native_flush.py``, ``test_persistent.py``, ``test_distributed.py``).

The band. Before every step both sides are given the reference's parameters and optimizer
buffers; each then computes one step, and every result (the output activations, the new
parameters and buffers) is compared normwise: ``max|fast − ref| / max|ref|``. A first-order
bound on that difference is

    band = 2 · C · u · κ

- ``u``, the unit roundoff (2⁻²⁴ in float32, 2⁻⁵³ in float64); the 2: both sides round
  independently.
- ``C``, the roundings along the longest chain of the step (:func:`chain_length`): per layer a
  dot product of length ``n_in`` (``n_in`` roundings, summed in any order: cuBLAS, the tiled
  GEMM, NumPy's pairwise sums and FMA contraction are all within it), the bias, the activation
  (:data:`gpumlp.activations.ULP_BUDGET` ulp, two math libraries); the output error (the cost's
  few operations and the activation's derivative); per layer backwards a dot of length
  ``n_out`` and σ'; the weight gradient, a sum over the batch ``m``; the penalties; the
  optimizer's update (:data:`UPDATE_OPS`).
- ``κ``, the condition of the step at these inputs, measured, not assumed, on the generic
  step itself, as the larger of (at least 1):
  - how far a relative perturbation of everything that goes in (parameters, buffers, the
    batch) moves what comes out, relative to the perturbation: the float64 step, perturbed at
    random by ±2⁻²⁴ (twice, the larger effect taken);
  - how far the float32 step's own result lies from the float64 one, over ``√C · u₃₂``, the
    typical error of C independent roundings: where an algorithm amplifies its rounding errors
    beyond the problem's condition (softmax outputs fed to the cross-entropy's
    (a − y)/(a(1 − a)), cancelling against Σ g a; Adam's m / (√v + ε) at a near-zero
    gradient), the reference shows it too.
  A float64 comparison thus also gets its κ from the float32 behaviour of the same step: the
  amplification is the algorithm's and the inputs', not the precision's.
"""

from __future__ import annotations

import numpy as np

from gpumlp import Network, engines
from gpumlp.activations import ULP_BUDGET
from gpumlp.config import TrainConfig
from gpumlp.runstate import TrainState
from helpers.nets import host

__all__ = ["SIZES", "N", "band", "chain_length", "compare_steps", "rel", "setup",
           "state_tensors"]  # fmt: skip

SIZES = (7, 13, 5)
N = 50
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float64": 2.0**-53}
# Roundings of one optimizer's update of an element, from the gradient (optim.py): penalties
# (l2·p, l1·sign p: 2 adds), then SGD p − lr·g (2); momentum v = μv − lr·g, p + v (3);
# Nesterov's look-ahead p + μv − lr·g on top (5); Adam's two moments (4), their bias corrections
# and √v̂ + ε (4), the quotient and the step (3).
UPDATE_OPS = {"sgd": 2, "momentum": 3, "nesterov": 5, "adam": 11}
PENALTY_OPS = 2


def setup(backend, dtype, combo, *, engine="generic", sizes=SIZES, batch=10, **fit):
    """A network, its run state over N random examples, and the device data set."""
    hidden, output, cost, optimizer = combo
    net = Network(list(sizes), activation=hidden, output_activation=output, cost=cost,
                  init="scaled", dtype=dtype, backend=backend, seed=3)  # fmt: skip
    cfg = TrainConfig(epochs=1, batch_size=batch, lr=0.01 if optimizer == "adam" else 0.3,
                      optimizer=optimizer, momentum=0.8, engine=engine, **fit)  # fmt: skip
    state = TrainState.start(net.spec, net.params, cfg, np.random.default_rng(0))
    rng = np.random.default_rng(5)
    X, y = rng.random((N, sizes[0])), rng.integers(sizes[-1], size=N)
    return net, state, net.inputs.data(X, y)


def epochs_against_generic(backend, engine, combo, dtype="float64", *, batch, epochs=1, lr=0.3,
                           **fit):  # fmt: skip
    """``epochs`` epochs at rate ``lr`` of ``engine`` on ``backend`` and of the generic NumPy
    step from the same state, each epoch in the order of ``default_rng(epoch)``: the worst
    relative difference of every state tensor and of the epochs' cost sums (the hits and the
    optimizer's scalars must be equal)."""
    _, ref_state, ref_data = setup("numpy", dtype, combo, batch=batch, **fit)
    _, state, data = setup(backend, dtype, combo, engine=engine, batch=batch, **fit)
    ref = engines.select_step(ref_state, ref_data, engine="generic")
    step = engines.select_step(state, data, engine=engine)
    assert step.engine == engine
    monitor, worst = ("train_cost", "train_accuracy"), 0.0
    for epoch in range(epochs):
        perm = np.random.default_rng(epoch).permutation(N)
        cost_ref, hits_ref = ref.epoch(perm, lr, epoch * 17, monitor=monitor)
        cost, hits = step.epoch(state.spec.xp.asarray(perm), lr, epoch * 17, monitor=monitor)
        assert int(hits) == int(hits_ref)
        worst = max(worst, rel(np.asarray(float(cost_ref)), np.asarray(float(cost))))
        for r, g in zip(state_tensors(ref_state), state_tensors(state), strict=True):
            worst = max(worst, rel(r, g))
    assert state.opt_state.scalars == ref_state.opt_state.scalars
    return worst


def rel(ref, got):
    """max|ref − got| / max|ref|, in float64 on the host."""
    ref, got = host(ref).astype(float), host(got).astype(float)
    scale = max(float(np.max(np.abs(ref), initial=0.0)), 1e-300)
    return float(np.max(np.abs(ref - got), initial=0.0)) / scale


def state_tensors(state):
    """The parameters, then each optimizer buffer in name order: what a step changes."""
    out = list(state.params.arrays())
    for key in sorted(state.opt_state.buffers):
        out += state.opt_state.buffers[key].arrays()
    return out


def chain_length(sizes, m, optimizer):
    """C: the roundings along the longest chain of one step (see the module docstring)."""
    forward = sum(n_in + 1 + ULP_BUDGET for n_in in sizes[:-1])
    output_error = 4 + 2 * ULP_BUDGET
    backward = sum(n_out + 1 + ULP_BUDGET for n_out in sizes[2:])
    return forward + output_error + backward + m + PENALTY_OPS + UPDATE_OPS[optimizer]


def _load(state, tensors):
    """Write host ``tensors`` into the state's arrays in place (engines keep views of them)."""
    import array_api_compat

    for dst, src in zip(state_tensors(state), tensors, strict=True):
        xp = array_api_compat.array_namespace(dst)
        dst[...] = src if isinstance(dst, np.ndarray) else xp.asarray(src.astype(dst.dtype))


def _jiggle(v, scale, rng):
    """v (float64) times 1 ± scale·u, signs at random."""
    v = np.asarray(v, dtype=np.float64)
    return v * (1 + scale * UNIT_ROUNDOFF["float32"] * rng.choice([-1.0, 1.0], size=v.shape))


def _run_generic(dtype, combo, sizes, fit, tensors, scalars, x, y, lr, k):
    """One generic NumPy step in ``dtype`` from these inputs: [a, *state tensors] in float64."""
    _, state, data = setup("numpy", dtype, combo, sizes=sizes, **fit)
    state.opt_state.scalars.update(scalars)
    _load(state, [np.asarray(t, dtype) for t in tensors])
    step = engines.select_step(state, data, engine="generic")
    a = step(np.asarray(x, dtype), np.asarray(y, dtype), lr, k)
    return [np.asarray(a, np.float64), *(np.asarray(t, np.float64) for t in state_tensors(state))]


def _condition(combo, sizes, m, fit, tensors, scalars, x, y, lr, k, rng):
    """κ of one step at these inputs (see the module docstring): the larger of how much the
    float64 generic step amplifies relative input perturbations of size u₃₂, and how much the
    float32 generic step's own error exceeds the √C·u₃₂ of C independent roundings."""
    u, c = UNIT_ROUNDOFF["float32"], chain_length(sizes, m, combo[3])
    args = (combo, sizes, fit)
    exact = _run_generic("float64", *args, tensors, scalars, x, y, lr, k)
    kappa = 1.0
    for scale in (1.0, -1.0):
        moved = _run_generic("float64", *args, [_jiggle(t, scale, rng) for t in tensors],
                             scalars, _jiggle(x, scale, rng), y, lr, k)  # fmt: skip
        kappa = max(kappa, *(rel(e, p) / u for e, p in zip(exact, moved, strict=True)))
    single = _run_generic("float32", *args, tensors, scalars, x, y, lr, k)
    own = max(rel(e, p) for e, p in zip(exact, single, strict=True))
    return max(kappa, own / (c**0.5 * u))


def band(dtype, combo, sizes, m, kappa):
    """The tolerance of one step in ``dtype``: 2 · C · u · κ."""
    return 2 * chain_length(sizes, m, combo[3]) * UNIT_ROUNDOFF[dtype] * kappa


def compare_steps(dtype, combo, engine, ms, sizes=SIZES, floor64=0.0, backend="cupy", **fit):
    """Run the fast engine on ``backend`` (CuPy, fake or real, or NumPy for the native engine)
    and GenericStep on NumPy over batches of ``ms``
    rows, from the same parameters before each step; assert each step's results within the
    band (in float64 at least ``floor64``: a GPU run holds float64 to the project's parity
    target, 1e-10, where the band is tighter). Returns the worst (error / tolerance) seen."""
    _, ref_state, ref_data = setup("numpy", dtype, combo, sizes=sizes, **fit)
    _, state, data = setup(backend, dtype, combo, engine=engine, sizes=sizes, **fit)
    ref_step = engines.select_step(ref_state, ref_data, engine="generic")
    step = engines.select_step(state, data, engine=engine)
    assert step.engine == engine
    rng = np.random.default_rng(11)
    worst, start = 0.0, 0
    for k, m in enumerate(ms, start=1):
        rows = np.arange(start, start + m) % N
        start += m
        lr = (0.01 if combo[3] == "adam" else 0.3) * (1.0 if k % 2 else 0.5)  # lr changes
        before = [host(t).copy() for t in state_tensors(ref_state)]
        _load(state, before)  # the same parameters in
        scalars = dict(ref_state.opt_state.scalars)
        x, y = (np.asarray(host(t[rows])) for t in ref_data[:2])
        a_ref = ref_step(*(t[rows] for t in ref_data[:2]), lr, k)
        a = step(*(data[i][host(rows)] for i in range(2)), lr, k)
        errs = [rel(a_ref, a)] + [
            rel(r, g) for r, g in zip(state_tensors(ref_state), state_tensors(state), strict=True)
        ]
        assert state.opt_state.scalars == ref_state.opt_state.scalars
        kappa = _condition(combo, sizes, m, fit, before, scalars, x, y, lr, k, rng)
        tol = band(dtype, combo, sizes, m, kappa)
        why = f"band 2·C·u·κ, C={chain_length(sizes, m, combo[3])}, κ={kappa:.3g}"
        if dtype == "float64" and floor64 > tol:
            tol, why = floor64, f"the float64 target {floor64:g} ({why})"
        assert max(errs) <= tol, (
            f"step {k}: error {max(errs):.3g} > tolerance {tol:.3g} ({why}; {combo}, {engine})"
        )
        worst = max(worst, max(errs) / tol)
    return worst

"""Optimizers, weight penalties and dropout: steps worked by hand, PyTorch as an oracle,
the book's L2/L1 formulas through ``fit``, and convergence of every optimizer x cost."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import gpumlp
import gpumlp.engines.steps
from gpumlp.network import Params
from gpumlp.optim import (
    OPTIMIZERS,
    SGD,
    Adam,
    Momentum,
    Optimizer,
    apply_update,
    get_optimizer,
)
from helpers.cli import run_python
from helpers.nets import host

# -- one optimizer step at a time, worked by hand -----------------------------------------------


def _scalar_params(w: float, b: float) -> Params:
    """One 1x1 weight and one bias, float64 on NumPy (the optimizers see any Params alike)."""
    return Params([np.array([[w]])], [np.array([b])])


def _run(opt, params: Params, grads: list[tuple[float, float]], lr: float) -> list[tuple]:
    """Apply ``opt`` for each (gw, gb) in ``grads``; return (w, b) after every step."""
    state = opt.init(params, xp=np)
    seen = []
    for gw, gb in grads:
        apply_update(opt, params, _scalar_params(gw, gb), state, lr=lr, xp=np)
        seen.append((params.weights[0][0, 0], params.biases[0][0]))
    return seen


def test_sgd_by_hand():
    # w ← w − η g with η = 0.25 (exact in binary, so the numbers below are exact):
    # w: 1 − 0.25·2 = 0.5;  0.5 − 0.25·(−1) = 0.75;  0.75 − 0.25·4 = −0.25
    # b: −2 − 0.25·0.5 = −2.125;  −2.125 − 0.25·0 = −2.125;  −2.125 − 0.25·(−8) = −0.125
    seen = _run(SGD(), _scalar_params(1.0, -2.0), [(2, 0.5), (-1, 0), (4, -8)], lr=0.25)
    assert seen == [(0.5, -2.125), (0.75, -2.125), (-0.25, -0.125)]


def test_momentum_by_hand():
    # The book's velocity form, μ = 0.5, η = 0.25: v ← μ v − η g, then w ← w + v.
    # step 1, g = 2:  v = 0.5·0 − 0.5 = −0.5;      w = 1 − 0.5 = 0.5
    # step 2, g = −1: v = 0.5·(−0.5) + 0.25 = 0;    w = 0.5 + 0 = 0.5   (momentum cancels g)
    # step 3, g = 4:  v = 0 − 1 = −1;               w = 0.5 − 1 = −0.5
    # Bias, g = 1, 1, 1: v = −0.25, −0.375, −0.4375; b = −0.25, −0.625, −1.0625
    seen = _run(Momentum(0.5), _scalar_params(1.0, 0.0), [(2, 1), (-1, 1), (4, 1)], lr=0.25)
    assert seen == [(0.5, -0.25), (0.5, -0.625), (-0.5, -1.0625)]


def test_nesterov_by_hand():
    # Nesterov looks ahead: v ← μ v − η g as above, then w ← w + μ v − η g (μ = 0.5, η = 0.25).
    # step 1, g = 2:  v = −0.5;  w = 1 + 0.5·(−0.5) − 0.5 = 0.25
    # step 2, g = −1: v = 0;     w = 0.25 + 0 + 0.25 = 0.5
    # step 3, g = 4:  v = −1;    w = 0.5 − 0.5 − 1 = −1
    seen = _run(
        Momentum(0.5, nesterov=True), _scalar_params(1.0, 0.0), [(2, 0), (-1, 0), (4, 0)], lr=0.25
    )
    assert [w for w, _ in seen] == [0.25, 0.5, -1.0]
    assert [b for _, b in seen] == [0.0, 0.0, 0.0]  # zero gradient, zero velocity: b stays


def test_adam_by_hand():
    # β1 = 0.9, β2 = 0.999, ε = 1e-8, η = 0.1, w = 1, gradients 2, −1, 0.5.
    # t=1: m = 0.1·2 = 0.2, v = 0.001·4 = 0.004, m̂ = 0.2/0.1 = 2, v̂ = 0.004/0.001 = 4,
    #      w = 1 − 0.1·2/(2 + 1e-8) = 0.9000000005 (Adam's first step is η·sign(g))
    # t=2: m = 0.18 − 0.1 = 0.08, v = 0.003996 + 0.001 = 0.004996,
    #      m̂ = 0.08/0.19 = 0.421053, v̂ = 0.004996/0.001999 = 2.499250, √v̂ = 1.580902,
    #      w = 0.9000000005 − 0.1·0.421053/1.580902 = 0.873366
    # t=3: m = 0.072 + 0.05 = 0.122, v = 0.004991004 + 0.00025 = 0.005241004,
    #      m̂ = 0.122/0.271 = 0.450185, v̂ = 0.005241004/0.002997001 = 1.748749,
    #      w = 0.873366 − 0.1·0.450185/1.322403 = 0.839323
    seen = _run(Adam(), _scalar_params(1.0, 0.0), [(2, 0), (-1, 0), (0.5, 0)], lr=0.1)
    w = [s[0] for s in seen]
    assert w[0] == pytest.approx(0.9000000005, rel=1e-15)
    assert w[1] == pytest.approx(0.873366, abs=1e-6)
    assert w[2] == pytest.approx(0.839323, abs=1e-6)
    # And to the last bit against the textbook form η m̂ / (√v̂ + ε), evaluated in Python.
    m = v = 0.0
    ref = 1.0
    for t, g in enumerate([2.0, -1.0, 0.5], start=1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        ref -= 0.1 * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)) ** 0.5 + 1e-8)
        assert w[t - 1] == pytest.approx(ref, rel=1e-14)
    assert [s[1] for s in seen] == [0.0, 0.0, 0.0]  # zero gradient: m = 0, no step


def test_adam_state_counts_steps():
    params = _scalar_params(1.0, 0.0)
    opt = Adam()
    state = opt.init(params, xp=np)
    for _ in range(3):
        apply_update(opt, params, _scalar_params(1.0, 1.0), state, lr=0.1, xp=np)
    assert state.scalars["t"] == 3


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_in_place_is_update_bit_for_bit(name, dtype):
    # The NumPy fast path's in-place form must be the functional update's arithmetic exactly,
    # over several steps (state carried) and for weights and biases alike.
    rng = np.random.default_rng(11)
    opt = get_optimizer(name, momentum=0.7)

    def params(arrays):
        return Params(
            [a.astype(dtype) for a in arrays[::2]], [a.astype(dtype) for a in arrays[1::2]]
        )

    start = [rng.standard_normal((3, 4)), rng.standard_normal(3)]
    functional, in_place, copied = params(start), params(start), params(start)
    s_f, s_i, s_c = (opt.init(p, xp=np) for p in (functional, in_place, copied))
    held = in_place.weights[0]  # written in place: a reference taken before stays current
    for lr in (0.5, 0.1, 0.02):
        grads = params([rng.standard_normal((3, 4)), rng.standard_normal(3)])
        apply_update(opt, functional, grads, s_f, lr=lr, xp=np)
        apply_update(opt, in_place, grads, s_i, lr=lr, xp=np, in_place=True)
        # The base class's default, for an optimizer that does not override it.
        k = opt.factors(lr, s_c)
        bufs = [s_c.buffers[name].arrays() for name in opt.buffers]
        for i, (p, g) in enumerate(zip(copied.arrays(), grads.arrays(), strict=True)):
            Optimizer.update_in_place(opt, p, g, [b[i] for b in bufs], k, xp=np)
        for other, state in ((in_place, s_i), (copied, s_c)):
            for a, b in zip(functional.arrays(), other.arrays(), strict=True):
                assert a.dtype == b.dtype == np.dtype(dtype) and np.array_equal(a, b)
            for key in opt.buffers:
                pairs = zip(s_f.buffers[key].arrays(), state.buffers[key].arrays(), strict=True)
                assert all(np.array_equal(a, b) for a, b in pairs)
    assert held is in_place.weights[0] and not np.array_equal(held, start[0].astype(dtype))
    assert s_f.scalars == s_i.scalars == s_c.scalars


# -- PyTorch as an oracle over several steps ----------------------------------------------------


def _torch_run(torch_opt_factory, gpumlp_opt, lr: float, steps: int = 6):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    w0, b0 = rng.standard_normal((3, 2)), rng.standard_normal(3)
    grads = [(rng.standard_normal((3, 2)), rng.standard_normal(3)) for _ in range(steps)]
    tw = torch.tensor(w0, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    topt = torch_opt_factory([tw, tb], lr)
    params = Params([w0.copy()], [b0.copy()])
    state = gpumlp_opt.init(params, xp=np)
    for gw, gb in grads:
        tw.grad, tb.grad = torch.tensor(gw), torch.tensor(gb)
        topt.step()
        apply_update(gpumlp_opt, params, Params([gw], [gb]), state, lr=lr, xp=np)
        np.testing.assert_allclose(params.weights[0], tw.detach().numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(params.biases[0], tb.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert not np.array_equal(params.weights[0], w0)


def test_adam_matches_torch():
    torch = pytest.importorskip("torch")
    _torch_run(
        lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.8, 0.99), eps=1e-7),
        Adam(0.8, 0.99, 1e-7),
        lr=0.01,
    )


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_torch_sgd(nesterov):
    # The book's v ← μv − ηg, w ← w + v and torch's buf ← μ buf + g, w ← w − η buf are the
    # same recursion with v = −η buf, as long as η does not change between steps.
    torch = pytest.importorskip("torch")
    _torch_run(
        lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=nesterov),
        Momentum(0.9, nesterov=nesterov),
        lr=0.05,
    )


def test_sgd_matches_torch():
    torch = pytest.importorskip("torch")
    _torch_run(lambda p, lr: torch.optim.SGD(p, lr=lr), SGD(), lr=0.05)


def test_velocity_form_differs_from_torch_when_lr_changes():
    # Why the claim above needs a constant η: the velocity keeps the old η inside it, torch's
    # buffer does not. After g = 1 at η = 1 then g = 0 at η = 0.5 (μ = 0.5):
    # book: v = −1, then v = −0.5, w = 0 − 1 − 0.5 = −1.5; torch: buf = 1, 0.5, w = −1 − 0.25.
    params = _scalar_params(0.0, 0.0)
    opt = Momentum(0.5)
    state = opt.init(params, xp=np)
    for g, lr in ((1.0, 1.0), (0.0, 0.5)):
        apply_update(opt, params, _scalar_params(g, 0.0), state, lr=lr, xp=np)
    assert params.weights[0][0, 0] == -1.5  # torch would give −1.25


@pytest.mark.parametrize(
    "opt", [SGD(), Momentum(0.0), Momentum(0.5), Momentum(0.9), Momentum(0.5, nesterov=True),
            Momentum(0.9, nesterov=True)], ids=repr)  # fmt: skip
def test_decay_limit_is_where_the_penalty_alone_diverges(opt):
    """The real update of the penalty's gradient ``(l2/n) w`` alone, at a step ``lr·l2/n`` a
    little below and a little above the optimizer's limit: it dies out, then grows."""

    def final(alpha: float) -> float:
        params = _scalar_params(1.0, 0.0)
        state = opt.init(params, xp=np)
        for _ in range(2000):
            w = float(params.weights[0][0, 0])
            apply_update(opt, params, _scalar_params(alpha * w, 0.0), state, lr=1.0, xp=np)
        return abs(float(params.weights[0][0, 0]))

    limit = opt.decay_limit()
    assert final(0.98 * limit) < 1e-3 and final(1.02 * limit) > 1e3


def test_adam_has_no_decay_limit():
    assert Adam().decay_limit() is None


def test_a_run_diverging_from_its_l2_decay_names_l2(blobs):
    X, y = blobs  # lr·l2/n = 3.0 * 120 / 90 = 4.0, past momentum 0.9's limit 3.8
    net = gpumlp.Network([X.shape[1], 5, 3], backend="numpy", dtype="float32", seed=0)
    with pytest.raises(gpumlp.DivergedError, match="use a smaller l2") as info:
        with np.errstate(all="ignore"):
            net.fit(X, y, epochs=30, lr=3.0, l2=120.0, optimizer="momentum", seed=0)
    assert info.value.change == "l2" and "try a smaller lr" not in str(info.value)


def test_get_optimizer_names_and_errors():
    assert [get_optimizer(n).name for n in OPTIMIZERS] == list(OPTIMIZERS)
    with pytest.raises(ValueError, match=r"rmsprop.*expected one of"):
        get_optimizer("rmsprop")
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\), got 1.5"):
        get_optimizer("momentum", momentum=1.5)
    with pytest.raises(ValueError, match=r"eps must be a positive number"):
        get_optimizer("adam", eps=0.0)


# -- weight penalties through fit: the book's update rules --------------------------------------


def _decay_reference(net0, X, y, *, lr, l2, l1, batch_size):
    """Apply the book's rules batch by batch (in order) on host copies of ``net0``'s params:
    L2: w ← (1 − ηλ/n) w − η ∂C/∂w;  L1: w ← w − (ηλ/n) sgn(w) − η ∂C/∂w;  b ← b − η ∂C/∂b,
    with n the size of the training set and ∂C/∂w the batch-mean gradient."""
    n = len(X)
    ws = [host(w).copy() for w in net0.weights]
    bs = [host(b).copy() for b in net0.biases]
    for k in range(0, n, batch_size):
        net0.load_params(ws, bs)
        gws, gbs = net0.gradients(X[k : k + batch_size], y[k : k + batch_size])
        for l in range(len(ws)):
            ws[l] = (1 - lr * l2 / n) * ws[l] - lr * l1 / n * np.sign(ws[l]) - lr * host(gws[l])
            bs[l] = bs[l] - lr * host(gbs[l])
    return ws, bs


@pytest.mark.parametrize(
    ("l2", "l1", "batch_size"), [(5.0, 0.0, 90), (5.0, 0.0, 30), (0.0, 4.0, 90), (0.0, 4.0, 30)]
)
def test_penalties_follow_the_book(blobs, l2, l1, batch_size):
    X, y = blobs
    kw = dict(cost="cross_entropy", backend="numpy", seed=3, dtype="float64")
    net = gpumlp.Network([4, 5, 3], **kw)
    ref = gpumlp.Network([4, 5, 3], **kw)
    net.fit(X, y, epochs=1, batch_size=batch_size, lr=0.5, l2=l2, l1=l1, shuffle=False)
    ws, bs = _decay_reference(ref, X, y, lr=0.5, l2=l2, l1=l1, batch_size=batch_size)
    for l in range(2):
        np.testing.assert_allclose(host(net.weights[l]), ws[l], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(host(net.biases[l]), bs[l], rtol=1e-12, atol=1e-14)
    # The penalty did something: without it the weights differ, the biases' first step not.
    plain = gpumlp.Network([4, 5, 3], **kw)
    plain.fit(X, y, epochs=1, batch_size=90, lr=0.5, shuffle=False)
    assert not np.allclose(host(plain.weights[0]), host(net.weights[0]))
    if batch_size == 90:  # one step: the biases saw the same gradient, undecayed
        np.testing.assert_allclose(host(plain.biases[1]), host(net.biases[1]), rtol=1e-12)


# -- dropout ------------------------------------------------------------------------------------


def test_dropout_evaluation_is_deterministic_and_unmasked(blobs):
    X, y = blobs
    net = gpumlp.Network([4, 16, 3], backend="numpy", seed=0, dtype="float64")
    net.fit(X, y, epochs=3, batch_size=10, lr=1.0, dropout=0.5, seed=1)
    a1, a2 = host(net.feedforward(X)), host(net.feedforward(X))
    assert np.array_equal(a1, a2)
    # The plain forward pass with the trained weights, no mask and no rescaling.
    w0, b0, w1, b1 = (host(t) for t in net.params.arrays())
    h = 1 / (1 + np.exp(-(X @ w0.T + b0)))
    np.testing.assert_allclose(a1, 1 / (1 + np.exp(-(h @ w1.T + b1))), rtol=1e-12)
    assert net.evaluate(X, y) == net.evaluate(X, y)


def test_dropout_masks_are_inverted_and_unbiased(blobs, monkeypatch):
    # Capture the multipliers the NumPy training step draws (the code path of fit with the fused
    # engine; the native engine draws the same masks in C++, tested against it in test_native).
    X, y = blobs
    p = 0.3
    masks: list[np.ndarray] = []
    real_masks = gpumlp.engines.steps.keep_masks

    def spy(*args, **kwargs):
        keep = real_masks(*args, **kwargs)
        assert len(keep) == 2  # two hidden layers; the output is never dropped
        masks.extend(host(k) for k in keep)
        return keep

    monkeypatch.setattr(gpumlp.engines.steps, "keep_masks", spy)
    net = gpumlp.Network([4, 200, 100, 3], backend="numpy", seed=0)
    net.fit(X, y, epochs=10, batch_size=30, lr=0.1, dropout=p, seed=0, engine="fused")
    keep = np.concatenate([m.ravel() for m in masks])
    assert keep.size == 10 * 90 * 300
    scale = np.float32(1 / (1 - p))
    assert set(np.unique(keep)) <= {0.0, scale}  # inverted dropout: 0 or 1/(1 − p)
    # 270,000 Bernoulli draws: the standard error of the zero fraction is ~0.0009.
    assert abs((keep == 0).mean() - p) < 0.005
    assert abs(keep.mean() - 1.0) < 0.01  # E[keep] = (1 − p)/(1 − p) = 1
    # Masks differ between batches.
    assert not np.array_equal(masks[0], masks[2])


def test_dropout_changes_training_and_is_reproducible(blobs):
    X, y = blobs

    def trained(dropout, seed=0):
        net = gpumlp.Network([4, 16, 3], backend="numpy", seed=0)
        net.fit(X, y, epochs=3, batch_size=10, lr=1.0, dropout=dropout, seed=seed)
        return [host(t) for t in net.params.arrays()]

    with_dropout = trained(0.5)
    assert not all(np.array_equal(a, b) for a, b in zip(with_dropout, trained(0.0), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(with_dropout, trained(0.5), strict=True))
    other_seed = trained(0.5, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(with_dropout, other_seed, strict=True))


# -- convergence: every optimizer x every cost learns the blobs ---------------------------------

LRS = {"sgd": 3.0, "momentum": 0.5, "nesterov": 0.5, "adam": 0.05}
COST_OUTPUTS = [
    ("quadratic", "sigmoid"),
    ("cross_entropy", "sigmoid"),
    ("log_likelihood", "softmax"),
]


def test_every_optimizer_has_a_convergence_lr():
    assert set(LRS) == set(OPTIMIZERS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize(("cost", "output"), COST_OUTPUTS)
def test_convergence(blobs, optimizer, cost, output):
    X, y = blobs
    net = gpumlp.Network([4, 8, 3], cost=cost, output_activation=output, backend="numpy", seed=0)
    history = net.fit(
        X, y, epochs=30, batch_size=10, lr=LRS[optimizer], optimizer=optimizer, seed=0
    )
    assert net.evaluate(X, y)["accuracy"] == 1.0
    assert history[-1]["train_cost"] < history[0]["train_cost"] / 2


# -- other namespaces: the update rule holds where arrays cannot be written in place ------------


def _trained(backend, dtype, **fit):
    rng = np.random.default_rng(0)
    X, y = rng.random((90, 4)), rng.integers(0, 3, 90)
    net = gpumlp.Network([4, 6, 3], activation="tanh", output_activation="softmax",
                         cost="log_likelihood", dtype=dtype, backend=backend, seed=0)  # fmt: skip
    before = [host(t).copy() for t in net.params.arrays()]
    net.fit(X, y, epochs=3, batch_size=10, lr=0.5, seed=0, engine="generic", **fit)
    return before, [host(t) for t in net.params.arrays()]


FIT = {"optimizer": "momentum", "l2": 0.1, "dropout": 0.2}


JAX_CHECK = """
import numpy as np, test_optim as t
before, after = t._trained("jax", "float32", **t.FIT)
_, ref = t._trained("numpy", "float32", **t.FIT)
assert not any(np.array_equal(a, b) for a, b in zip(before, after, strict=True)), "no update"
for got, want in zip(after, ref, strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
print("ok")
"""


def test_jax_trains_like_numpy():
    # jax.numpy's arrays are immutable: a namespace where in-place updates would be silently
    # lost. Params.set rebinds them, so JAX trains like NumPy to float32 rounding. In a child
    # process: JAX's threads must not be in this one when the fault tests fork.
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    assert run_python(JAX_CHECK).strip().endswith("ok")


def test_torch_trains_like_numpy():
    # PyTorch's tanh and axis sums round differently from NumPy's (its matmul and exp agree
    # bit for bit here), so the two agree to float64 rounding, not bit for bit.
    pytest.importorskip("torch")
    _, after = _trained("torch", "float64", **FIT)
    _, ref = _trained("numpy", "float64", **FIT)
    for got, want in zip(after, ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_array_api_strict_trains_bit_for_bit_like_numpy():
    pytest.importorskip("array_api_strict")
    _, after = _trained("array_api_strict", "float64", **FIT)
    _, ref = _trained("numpy", "float64", **FIT)
    for got, want in zip(after, ref, strict=True):
        assert np.array_equal(got, want)

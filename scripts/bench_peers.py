"""The peers ``scripts/bench.py`` times gpumlp against: the same network in PyTorch and in JAX.

Both train what gpumlp's benchmark rows train: sigmoid layers, the quadratic cost
C = ½‖a − y‖² averaged over each mini-batch, plain SGD at the case's lr, from gpumlp's initial
weights (``W`` shape (n_out, n_in), ``b`` (n_out,)), on the data set already on the device.
Each maker returns ``epoch(rows) -> seconds``: one epoch over the first ``rows`` samples, its
running cost kept on the device and read once at the end (as gpumlp's ``train_cost`` monitor).

* PyTorch, written the usual way: ``torch.randperm`` per epoch, ``X[idx]`` per batch,
  ``nn.Sequential(Linear, Sigmoid, ...)``, ``optim.SGD``, eager (or ``torch.compile``).
* JAX, written the usual way for speed: one jitted function trains a whole epoch as a
  ``jax.lax.scan`` over its batches (``jax.grad`` of the batch-mean cost, ``jax.nn.sigmoid``),
  compiled ahead for each epoch shape so no timed epoch compiles. Its epoch order is gpumlp's:
  a host ``numpy.random.default_rng(seed)`` draws the initial weights (as ``gpumlp.Network``
  does) and then ``permutation(rows)`` per epoch (as ``fit`` does), so with the same seed both
  visit the same batches. A last, partial batch is one more jitted step after the scan.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

import gpumlp
from gpumlp.backend import cupy_status, to_host
from gpumlp.initial import init_params

Epoch = Callable[[int], float]
Clock = Callable[[], float]


def import_jax() -> tuple[Any, str]:
    """``(jax, "")``, or ``(None, why)`` when JAX cannot be imported."""
    try:
        import jax
    except ImportError as exc:
        return None, f"jax is not importable ({exc})"
    return jax, ""


def jax_devices(jax: Any) -> dict[str, str]:
    """Map ``jax-cpu`` and ``jax-cuda`` to "" when the imported ``jax`` has that platform, else
    to why not."""
    found = {}
    for kind, platform in (("jax-cpu", "cpu"), ("jax-cuda", "gpu")):
        try:
            found[kind] = "" if jax.devices(platform) else f"JAX sees no {platform} device"
        except RuntimeError:  # no backend for the platform: a CPU-only jaxlib, or no device
            present = ", ".join(sorted({d.platform for d in jax.devices()}))
            found[kind] = f"JAX has no {platform} platform here (only {present})"
    return found


def available_backends(torch: Any, jax: Any, no_jax: str) -> dict[str, str]:
    """Map each backend to "" if it can run here, else to the reason it cannot."""
    cupy_ok, cupy_why = cupy_status()
    no_torch = "" if torch is not None else "torch is not importable"
    no_cuda = no_torch or ("" if torch.cuda.is_available() else "torch sees no CUDA device")
    no_jax = dict.fromkeys(("jax-cpu", "jax-cuda"), no_jax)
    return {
        "numpy": "",
        "cupy": "" if cupy_ok else cupy_why,
        "torch-cpu": no_torch,
        "torch-cuda": no_cuda,
        "torch-compile": no_cuda,
        **(jax_devices(jax) if jax is not None else no_jax),
    }


def import_torch() -> Any:
    """The ``torch`` module, or None when it cannot be imported."""
    try:
        import torch
    except ImportError:
        return None
    return torch


class JaxPeer:
    """The network in JAX, trained an epoch at a time by one compiled ``lax.scan``.

    ``case`` gives ``sizes``, ``init``, ``lr`` and ``batch_size``; ``X`` (n, n_0) is float32, or
    float64 under ``jax.enable_x64``; ``y`` (n,) the integer labels. The initial weights and
    then each epoch's order come from ``numpy.random.default_rng(seed)``, as in
    ``gpumlp.Network(seed=seed).fit``. ``params`` holds ``[(W, b), ...]`` on ``device``,
    ``W`` (n_out, n_in), ``b`` (n_out,).
    """

    def __init__(self, jax: Any, case: Any, X: Any, y: Any, *, device: Any, seed: int = 0):
        self.jax, self.batch_size, self.device = jax, case.batch_size, device
        self.rng = np.random.default_rng(seed)
        init = init_params(case.sizes, case.init, self.rng, dtype=str(X.dtype), xp=np)
        put = functools.partial(jax.device_put, device=device)
        self.params = [(put(w), put(b)) for w, b in zip(init.weights, init.biases, strict=True)]
        self.X, self.Y = put(X), put(np.eye(case.sizes[-1], dtype=X.dtype)[y])
        lr = case.lr
        jnp = jax.numpy

        def cost(params: Any, x: Any, t: Any) -> tuple[Any, Any]:
            a = x
            for w, b in params:
                a = jax.nn.sigmoid(a @ w.T + b)
            total = 0.5 * jnp.sum((a - t) ** 2)
            return total / x.shape[0], total  # the batch mean is differentiated; the sum kept

        grad = jax.grad(cost, has_aux=True)

        def step(params: Any, X: Any, Y: Any, idx: Any) -> tuple[Any, Any]:
            g, total = grad(params, X[idx], Y[idx])
            return jax.tree.map(lambda p, dp: p - lr * dp, params, g), total

        def epoch(params: Any, X: Any, Y: Any, full: Any, tail: Any) -> tuple[Any, Any]:
            def body(carry: Any, idx: Any) -> tuple[Any, None]:
                params, running = carry
                params, total = step(params, X, Y, idx)
                return (params, running + total), None

            (params, running), _ = jax.lax.scan(body, (params, jnp.zeros((), X.dtype)), full)
            if tail.shape[0]:  # the partial last batch: the shape is known when tracing
                params, total = step(params, X, Y, tail)
                running = running + total
            return params, running

        self._jitted = jax.jit(epoch)
        self._compiled: dict[tuple[int, int], Any] = {}

    def _orders(self, perm: Any) -> tuple[Any, Any]:
        """``perm`` (rows,) as the scan's (rows // m, m) full batches and the rest, on device."""
        full = len(perm) // self.batch_size * self.batch_size
        idx = np.asarray(perm, dtype=np.int32)
        put = functools.partial(self.jax.device_put, device=self.device)
        return put(idx[:full].reshape(-1, self.batch_size)), put(idx[full:])

    def compile(self, rows: int) -> None:
        """Compile the epoch for ``rows`` samples now, so that no timed epoch compiles."""
        key = divmod(rows, self.batch_size)
        if key not in self._compiled:
            full, tail = self._orders(np.arange(rows))
            lowered = self._jitted.lower(self.params, self.X, self.Y, full, tail)
            self._compiled[key] = lowered.compile()

    def epoch(self, rows: int) -> Any:
        """Train one epoch over the first ``rows`` samples in the next order the generator
        draws; returns the summed cost as a device scalar (not waited for)."""
        self.compile(rows)
        full, tail = self._orders(self.rng.permutation(rows))
        compiled = self._compiled[divmod(rows, self.batch_size)]
        self.params, running = compiled(self.params, self.X, self.Y, full, tail)
        return running


def jax_epoch(
    jax: Any, case: Any, kind: str, X: Any, y: Any, warmup_rows: int, clock: Clock
) -> Epoch:
    """``epoch(rows) -> seconds`` on ``clock`` of :class:`JaxPeer` (``kind`` jax-cpu or
    jax-cuda) from gpumlp's initial weights for seed 0, in gpumlp's epoch orders; compiled for
    ``len(X)`` and ``warmup_rows`` samples before it returns."""
    device = jax.devices("cpu" if kind == "jax-cpu" else "gpu")[0]
    peer = JaxPeer(jax, case, X, y, device=device, seed=0)
    for rows in (warmup_rows, len(X)):
        peer.compile(rows)

    def epoch(rows: int) -> float:
        start = clock()
        running = peer.epoch(rows)
        running.block_until_ready()
        float(running)  # the one host read per epoch, like gpumlp's train_cost monitor
        return clock() - start

    return epoch


def torch_epoch(torch: Any, case: Any, kind: str, X: Any, y: Any, clock: Clock) -> Epoch:
    """``epoch(rows) -> seconds`` on ``clock`` of the network in PyTorch; ``kind`` is
    torch-cpu, torch-cuda or torch-compile (``torch.compile(mode="reduce-overhead")`` of
    model + loss)."""
    device = "cpu" if kind == "torch-cpu" else "cuda"
    torch.manual_seed(0)
    layers: list[Any] = []
    init = gpumlp.Network(list(case.sizes), init=case.init, backend="numpy", seed=0)
    for w, b in zip(init.weights, init.biases, strict=True):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(to_host(w)))
            lin.bias.copy_(torch.from_numpy(to_host(b)))
        layers += [lin, torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=case.lr)

    def loss_fn(x: Any, t: Any) -> Any:
        return 0.5 * ((model(x) - t) ** 2).sum(1).mean()

    if kind == "torch-compile":
        loss_fn = torch.compile(loss_fn, mode="reduce-overhead")

    def step(x: Any, t: Any) -> Any:
        if kind == "torch-compile":
            torch.compiler.cudagraph_mark_step_begin()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x, t)
        loss.backward()
        opt.step()
        return loss.detach()

    Xd = torch.from_numpy(X).to(device)
    Yd = torch.nn.functional.one_hot(torch.from_numpy(y), case.sizes[-1]).float().to(device)

    def epoch(rows: int) -> float:
        start = clock()
        idx = torch.randperm(rows, device=device)
        running = torch.zeros((), device=device)
        for k in range(0, rows, case.batch_size):
            batch = idx[k : k + case.batch_size]
            running = running + step(Xd[batch], Yd[batch])
        if device == "cuda":
            torch.cuda.synchronize()
        running.item()  # the one host read per epoch, like gpumlp's train_cost monitor
        return clock() - start

    if kind == "torch-compile":  # compile and record the CUDA graphs before the warm-up
        epoch(min(len(X), 8 * case.batch_size + len(X) % case.batch_size))
    return epoch

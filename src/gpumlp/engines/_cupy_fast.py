"""CuPy fast paths for training: fused kernels (``fused``), CUDA graphs (``graph``) and one
launch per epoch (``persistent``).

Both do what :class:`.steps.GenericStep` does (backprop on the batch, penalties, dropout,
one optimizer update in place) with few, large kernel launches and no host synchronisation:
the batch is gathered on the device, the cost and hit count are summed on the device, and the
epoch's sums are read once, by the epoch loop. They are chosen only by
:func:`gpumlp.engines.select_step` and tested against the generic step (on the CPU under an
emulation of CUDA in every CI run, and on a GPU where there is one).

``fused``
    cuBLAS GEMMs (``cupy.matmul``) and one kernel per remaining stage (:mod:`._kernels`),
    launched eagerly: about 3 + 5L launches per step for L layers.
``graph``
    The same sequence with the GEMMs done by a tiled kernel (CuPy's cuBLAS calls cannot be
    captured), captured as CUDA graphs: one of :data:`GRAPH_CHUNK` consecutive steps, replayed
    for the epoch's full batches, and one per remaining batch shape. An epoch is then about
    n / (batch · GRAPH_CHUNK) graph launches.

``persistent``
    A whole epoch in one launch of one thread block, the network in its shared memory
    (:mod:`._persistent`).

``auto`` takes ``persistent`` for small steps of a network that fits one block
(:func:`persistent_wins`), else ``graph`` for launch-bound steps (:func:`launch_bound`), where
replaying a graph saves more than the tiled GEMM costs against cuBLAS, and ``fused`` otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from .. import backend
from ..activations import ACTIVATIONS
from ..backend import Array
from ..costs import COSTS
from ..distributed.comm import local_rows
from ..runstate import TrainState
from . import _persistent
from ._cupy_core import Core
from ._generated import generated, generated_optimizer
from ._kernels import kernel_source
from ._launch import KERNEL_NAMES, signatures
from .steps import Data

__all__ = ["GRAPH_CHUNK", "GRAPH_MAX_MACS", "PERSISTENT_MAX_MACS", "launch_bound", "make_step",
           "persistent_wins", "unsupported"]  # fmt: skip

logger = logging.getLogger(__name__)

GRAPH_MAX_MACS = 1 << 21
"""``auto`` uses ``graph`` when a step's multiply-adds per layer pass (batch · Σ n_in·n_out)
are at most this: the book's [784, 30, 10] at batch 10 (0.24 M) qualifies, at batch 100 (2.4 M)
or [784, 800, 10] it does not. A conservative rule until the crossover is measured on a GPU
(``scripts/bench.py --engines``), since the 16×16 tiled GEMM loses to cuBLAS as work grows."""
PERSISTENT_MAX_MACS = 1 << 18
"""``auto`` uses ``persistent`` (where the network fits one block's shared memory) when a
step's multiply-adds per layer pass are at most this: one SM then does a step in about the
time ``graph`` spends launching its kernels. The book's [784, 30, 10] at batch 10 (0.24 M)
qualifies, at batch 100 it does not. A prediction from the cost model of
``docs/architecture.md`` until the first device run measures the crossover."""
GRAPH_CHUNK = 32
"""Training steps captured in one CUDA graph."""


def launch_bound(sizes: list[int], batch_size: int) -> bool:
    """True when a step is small enough that launches, not arithmetic, bound it."""
    return batch_size * sum(a * b for a, b in itertools.pairwise(sizes)) <= GRAPH_MAX_MACS


def persistent_wins(sizes: list[int], batch_size: int) -> bool:
    """True when one SM is predicted to run a step faster than the whole GPU's launches."""
    return batch_size * sum(a * b for a, b in itertools.pairwise(sizes)) <= PERSISTENT_MAX_MACS


def unsupported(state: TrainState, *, engine: str) -> str | None:
    """Why the fast path ``engine`` cannot run ``state`` (None when it can). Pure Python."""
    if engine not in ("auto", "fused", "graph", "persistent"):
        return f"engine={engine!r} is not a CuPy fast path"
    spec, opt = state.spec, state.optimizer
    for act in spec.activations[:-1]:
        if not generated(act, ACTIVATIONS) or act.cuda_fn is None:
            return f"hidden activation {act.name!r} has no CUDA form"
    out = spec.activations[-1]
    if not generated(out, ACTIVATIONS):
        return f"output activation {out.name!r} has no CUDA form"
    if not generated(spec.cost, COSTS):
        return f"cost {spec.cost.name!r} has no CUDA form"
    if not generated_optimizer(opt):
        return f"optimizer {opt.name!r} has no CUDA form"
    if not backend.is_cupy(spec.xp):
        return f"the fast paths need the CuPy backend, not {spec.backend}"
    return None


@functools.cache
def _kernels(dtype: str) -> dict[str, Any]:
    return backend.compile_cuda(kernel_source(dtype), KERNEL_NAMES)


def make_step(state: TrainState, data: Data, *, engine: str) -> tuple[Any, str]:
    """Build a fast step for ``state`` over ``data`` (``persistent``, ``graph`` or ``fused``;
    ``auto`` picks by :func:`persistent_wins` and :func:`launch_bound`), or return
    ``(None, why not)``."""
    why = unsupported(state, engine=engine)
    if why is not None:
        return None, why
    try:
        kernels = _kernels(state.spec.dtype)
    except Exception as exc:  # NVRTC missing or a compile error: a reason, not a crash later
        return None, f"the fast-path kernels did not compile: {exc}"
    cp = backend.cupy_module()
    sizes, batch = list(state.spec.sizes), state.config.batch_size
    if state.comm is not None:  # the ranks sum each step's gradients: one step per launch
        return FusedStep(Core(state, data, kernels, cp)), ""
    if engine == "persistent" or (engine == "auto" and persistent_wins(sizes, batch)):
        has_drop = bool(state.config.dropout) and len(sizes) > 2
        limit = _persistent.shared_limit(cp)
        why = _persistent.too_big(sizes, batch, state.spec.dtype, has_drop, limit)
        if why is None:
            threads = _persistent.threads_for(sizes, batch, _persistent.THREADS)
            return _persistent.PersistentStep(Core(state, data, kernels, cp), threads=threads), ""
        if engine == "persistent":
            return None, why
        logger.info("engine auto: not persistent (%s)", why)
    core = Core(state, data, kernels, cp)
    use_graph = engine == "graph" or (engine == "auto" and launch_bound(sizes, batch))
    if not use_graph:
        return FusedStep(core), ""
    try:
        return GraphStep(core, forced=engine == "graph"), ""
    except Exception as exc:  # the kernels would not load, or no stream could be made
        if engine == "graph":
            return None, f"the graph engine could not start: {exc}"
        logger.warning("engine auto: the graph engine could not start (%s); using 'fused'", exc)
        return FusedStep(core), ""


class FusedStep:
    """``engine="fused"``: cuBLAS GEMMs and fused kernels, launched eagerly."""

    engine = "fused"

    @property
    def label(self) -> str:
        """The engine that ran (a graph step that fell back says ``fused``)."""
        return self.engine

    def __init__(self, core: Core) -> None:
        self.core = core

    def _steps(self, ws: SimpleNamespace, steps: int, *, gathered: bool) -> None:
        """Enqueue ``steps`` consecutive steps over batches of ``ws.m`` rows."""
        for _ in range(steps):
            self.core.launch(ws, gathered=gathered, gemm=self.core.gemm_cublas)

    def _plan(self, full: int, rest: int) -> list[tuple[int, int, int]]:
        """An epoch as (launches, batch rows, steps per launch): here one step per launch."""
        return [(full, self.core.batch, 1)] + ([(1, rest, 1)] if rest else [])

    def __call__(
        self, x: Array, y: Array, lr: float, draw: int = 0, *, part: tuple[int, int] | None = None
    ) -> Array:
        """One step on an explicit batch (see :mod:`gpumlp.engines.steps`)."""
        core, cp = self.core, self.core.cp
        core.prepare(lr)
        ws = core.workspace(x.shape[0])
        cp.copyto(ws.x, x)
        cp.copyto(ws.y, y)
        core.set_counters(0, draw)
        if part is None:
            self._steps(ws, 1, gathered=False)
        else:  # a rank's part: eagerly, the update waiting for the ranks' sum
            core.launch(ws, gathered=False, gemm=core.gemm_cublas, part=part)
        core.after_steps(1)
        out: Array = ws.a[-1].copy()  # the buffer is reused by the next step
        return out

    def epoch(
        self,
        perm: Array | None,
        lr: float,
        draw: int,
        *,
        monitor: tuple[str, ...] = (),
        progress: Callable[[int], object] | None = None,
    ) -> tuple[Array, Array]:
        """Every mini-batch of the bound data in the order ``perm``; the device sums back."""
        core, comm = self.core, self.core.state.comm
        core.start_epoch(perm, lr)
        core.set_counters(0, draw)
        full, rest = divmod(core.n, core.batch)
        for launches, m, steps in self._plan(full, rest):
            # under a communicator this rank's part of each global batch of m rows, a step each
            lo, hi = (0, m) if comm is None else local_rows(m, comm.rank, comm.size)
            ws = core.workspace(hi - lo)
            for _ in range(launches):
                if comm is None:
                    self._steps(ws, steps, gathered=True)
                else:
                    core.launch(ws, gathered=True, gemm=core.gemm_cublas, part=(lo, m))
                if progress is not None:
                    progress(steps)
        core.after_steps(full + (rest > 0))
        if core.reducer is not None:
            return core.reducer.epoch_sums(core.sums[0], core.hits[0])
        return core.sums[0], core.hits[0]


class GraphStep(FusedStep):
    """``engine="graph"``: steps captured as CUDA graphs and replayed (module docstring).

    A capture failure falls back to eager launches with a logged reason, or raises when the
    graph engine was asked for by name (``forced``).
    """

    def __init__(self, core: Core, *, forced: bool) -> None:
        super().__init__(core)
        self.forced, self.failed = forced, False
        self.graphs: dict[tuple[int, bool, int], Any] = {}
        self.stream = core.cp.cuda.Stream(non_blocking=True)
        warm(core)

    @property
    def engine(self) -> str:  # type: ignore[override]
        """``graph``, or ``fused`` after a capture failed."""
        return "fused" if self.failed else "graph"

    def _plan(self, full: int, rest: int) -> list[tuple[int, int, int]]:
        chunks, single = divmod(full, GRAPH_CHUNK)
        plan = [(chunks, self.core.batch, GRAPH_CHUNK), (single, self.core.batch, 1)]
        return plan + ([(1, rest, 1)] if rest else [])

    def _steps(self, ws: SimpleNamespace, steps: int, *, gathered: bool) -> None:
        key = (ws.m, gathered, steps)
        graph = None if self.failed else self.graphs.get(key) or self._capture(ws, gathered, steps)
        if graph is None:  # capture failed: this and later steps run eagerly
            super()._steps(ws, steps, gathered=gathered)
            return
        self.graphs[key] = graph
        graph.launch()  # on the caller's current stream, so its next kernels see the result

    def _capture(self, ws: SimpleNamespace, gathered: bool, steps: int) -> Any:
        core, stream = self.core, self.stream
        try:
            with stream:
                stream.begin_capture()
                try:
                    for _ in range(steps):
                        core.launch(ws, gathered=gathered, gemm=core.gemm_tiled)
                except BaseException:
                    with contextlib.suppress(Exception):
                        stream.end_capture()
                    raise
                return stream.end_capture()
        except Exception as exc:
            if self.forced:
                raise RuntimeError(f"engine='graph': CUDA graph capture failed: {exc}") from exc
            logger.warning("engine auto: CUDA graph capture failed (%s); using 'fused'", exc)
            self.failed = True
            return None


def warm(core: Core) -> None:
    """Launch every kernel once on empty work (every size 0, every pointer a small scratch
    array of its type), so none first loads inside a capture."""
    scratch: dict[str, Any] = {}
    for name, params in signatures(core.dtype.name).items():
        args = {}
        for p in params:
            if p.pointer and p.dtype not in scratch:
                scratch[p.dtype] = core.cp.zeros(8, dtype=p.dtype)
            args[p.name] = scratch[p.dtype] if p.pointer else 0
        core.call(name, (1,), **args)

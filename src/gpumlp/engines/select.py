"""The one place a training step is chosen: the generic ``xp`` step, a backend's fast path, or
the native engine (NumPy only; ``auto`` tries it first where it is measured faster, and falls
back to ``fused`` with the reason logged when it does not apply or cannot be built)."""

from __future__ import annotations

import itertools
import logging

from ..backend import backend_name
from ..config import ModelSpec
from ..runstate import TrainState
from . import _cupy_fast, _native, _numpy_fast
from ._native_build import NativeUnavailable, numpy_blas
from .steps import Data, GenericStep, Step

__all__ = [
    "NATIVE_MAX_MACS",
    "PER_STEP",
    "check_engine",
    "native_wins",
    "select_run_step",
    "select_step",
]

logger = logging.getLogger(__name__)


def select_step(state: TrainState, data: Data, *, engine: str | None = None) -> Step:
    """Choose the training step for ``state`` over the device data set ``data``.

    ``engine`` (default: the config's) is one of :data:`gpumlp.config.ENGINES`. A fast path is
    used only on its backend and only for configurations it supports; asking for one that does
    not apply raises ValueError saying why, while ``auto`` falls back to :class:`GenericStep`.
    Under a communicator (``state.comm``) only :data:`PER_STEP` engines run (``auto``: the
    backend's ``fused`` step, where it applies).
    """
    engine = engine or state.config.engine
    check_engine(state.spec, engine, distributed=state.comm is not None)
    name = backend_name(state.spec.xp)
    if engine == "native" or (
        engine == "auto" and name == "numpy" and state.comm is None and native_wins(state)
    ):
        native, why = _native.make_step(state, data)
        if native is not None:
            return native
        if engine == "native":
            raise ValueError(f"engine='native' does not apply here: {why}")
        logger.info("engine auto: not native (%s)", why)
    if engine != "generic" and name in ("numpy", "cupy"):
        fast = _cupy_fast if name == "cupy" else _numpy_fast
        made: tuple[Step | None, str] = fast.make_step(state, data, engine=engine)
        step, why_not = made
        if step is not None:
            return step
        if engine != "auto":
            raise ValueError(f"engine={engine!r} does not apply here: {why_not}")
        logger.info("engine auto: generic step (%s)", why_not)
    return GenericStep(state, data)


def select_run_step(state: TrainState, data: Data, *, resumed: bool) -> Step:
    """The step a run trains with, recorded in its history (``History.engines``).

    A resumed run whose config says ``auto`` takes the engine its history last recorded, so it
    continues as it began (on the same machine, bit for bit); where that engine cannot run here,
    a warning says why and which engine it continues with."""
    engine, history = state.config.engine, state.history
    step: Step | None = None
    last = history.engines[-1] if history.engines else None
    recorded = str(last.get("engine")) if last else None
    if resumed and engine == "auto" and recorded not in (None, "auto"):
        try:
            step = select_step(state, data, engine=recorded)
        except ValueError as exc:
            step = select_step(state, data)
            logger.warning("the run trained with engine %r, which cannot continue here (%s); "
                           "continuing with %r", recorded, exc, step.engine)  # fmt: skip
    step = step or select_step(state, data)
    build = getattr(step, "build_info", None)
    entry = {"from_epoch": state.epoch, "engine": step.engine, "label": step.label,
             "build": build}  # fmt: skip
    if last is None or any(last.get(k) != entry[k] for k in ("engine", "label", "build")):
        history.engines.append(entry)
    return step


NATIVE_MAX_MACS = 1 << 23
"""Without a BLAS to call (:func:`._native_build.numpy_blas`), ``auto`` takes ``native`` on
NumPy when a step's multiply-adds per layer pass (batch · Σ n_in·n_out) are at most this; with
one it takes ``native`` whatever the size. Measured on one core (docs/architecture.md, "The
native engine"): with its own products only, native was 2.5× ``fused`` on [784, 30, 10] at
batch 10 (0.24 M), 1.2× at batch 100 (2.4 M), level on [784, 100, 10] at batch 100 (7.9 M),
and behind OpenBLAS's GEMMs above (0.81× on [784, 800, 10] at batch 100); with its large
products on NumPy's BLAS it was ahead at every size measured (1.07× on [784, 800, 10])."""


def native_wins(state: TrainState) -> bool:
    """Whether ``auto`` tries the native engine for ``state`` (:data:`NATIVE_MAX_MACS`)."""
    sizes, batch = state.spec.sizes, state.config.batch_size
    if numpy_blas(state.spec.dtype) is not None:
        return True
    return batch * sum(a * b for a, b in itertools.pairwise(sizes)) <= NATIVE_MAX_MACS


PER_STEP = ("auto", "generic", "fused")
"""The engines that can train under a communicator (:mod:`gpumlp.distributed`; ``auto`` picks
the backend's ``fused`` step there): the others run whole epochs in one call (CUDA graphs, one
persistent kernel, the native C++ epoch), with no point between a step's gradients and its
update where the ranks could sum them."""


def check_engine(spec: ModelSpec, engine: str, *, distributed: bool = False) -> None:
    """Refuse an engine the backend cannot run, or (``distributed``) one that cannot sum its
    gradients over the ranks each step, or ``native`` where its library cannot be built (no
    compiler, a failed compile): before anything is written."""
    name = backend_name(spec.xp)
    if engine == "native" and name != "numpy":
        raise ValueError(f"engine='native' needs the NumPy backend, not {name}")
    if distributed and engine not in PER_STEP:
        raise ValueError(
            f"--distributed: engine={engine!r} runs whole epochs in one call, with no point "
            "between a step's gradients and its update where the ranks could sum them; use "
            "auto (which picks a per-step engine), fused or generic"
        )

    if engine in ("graph", "persistent") and name != "cupy":
        raise ValueError(f"engine={engine!r} needs the CuPy backend, not {name}")
    if engine == "fused" and name not in ("numpy", "cupy"):
        raise ValueError(f"engine='fused' needs the NumPy or CuPy backend, not {name}")
    if engine == "native":  # built (or found in the cache) now, so a refusal comes first
        try:
            _native.library(spec.dtype)
        except NativeUnavailable as exc:
            raise ValueError(f"engine='native' cannot run here: {exc}; use auto or fused") from exc

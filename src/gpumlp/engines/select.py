"""The one place a training step is chosen: the generic ``xp`` step or a backend's fast path."""

from __future__ import annotations

import logging

from ..backend import backend_name
from ..config import ModelSpec
from ..runstate import TrainState
from . import _cupy_fast, _numpy_fast
from .steps import Data, GenericStep, Step

__all__ = ["PER_STEP", "check_engine", "select_step"]

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


PER_STEP = ("auto", "generic", "fused")
"""The engines that can train under a communicator (:mod:`gpumlp.distributed`): the others run
whole epochs on the device (CUDA graphs, one persistent kernel), with no point between a
step's gradients and its update where the ranks could sum them."""


def check_engine(spec: ModelSpec, engine: str, *, distributed: bool = False) -> None:
    """Refuse an engine the backend cannot run, or (``distributed``) one that cannot sum its
    gradients over the ranks each step (before anything is built or written)."""
    name = backend_name(spec.xp)
    if distributed and engine not in PER_STEP:
        raise ValueError(
            f"--distributed: engine={engine!r} runs whole epochs on the device, with no point "
            "between a step's gradients and its update where the ranks could sum them; use "
            "auto (which picks a per-step engine), fused or generic"
        )

    if engine in ("graph", "persistent") and name != "cupy":
        raise ValueError(f"engine={engine!r} needs the CuPy backend, not {name}")
    if engine == "fused" and name not in ("numpy", "cupy"):
        raise ValueError(f"engine='fused' needs the NumPy or CuPy backend, not {name}")

"""Training a network's parameters to the end: the run state, the engine, the epochs, and what
happens when training stops short (Ctrl-C or a signal, divergence, memory running out).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import signals
from .engines import select_step
from .errors import DivergedError, TrainingInterrupted
from .history import History
from .memory import explain_failure, is_out_of_memory
from .runstate import TrainState, check_checkpoint_path
from .steps import Data
from .train import run_epochs

__all__ = ["train_network"]


def train_network(
    state: TrainState,
    data: Data,
    validation: Data | None,
    resume: str | Path | None = None,
    progress: Callable[..., Any] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> History:
    """Run ``state`` (resumed from the checkpoint ``resume``, if given) over the device data
    sets to its config's last epoch; see :meth:`gpumlp.Network.fit` for what it raises.

    Whatever stops training, the parameters are those of the last finished epoch, and the
    config's checkpoint (if any) holds that state, written while further interrupts wait.
    """
    cfg, spec = state.config, state.spec
    if resume is not None:
        state.load(resume)
    if cfg.checkpoint is not None:
        check_checkpoint_path(cfg.checkpoint)
    try:
        step = select_step(state, data)
        return run_epochs(state, step, data, validation, progress=progress, on_epoch=on_epoch)
    except KeyboardInterrupt as exc:
        with signals.deferred():
            state.restore()
            state.history.stop_reason = f"interrupted during epoch {state.epoch}"
            if cfg.checkpoint is not None:
                state.save(cfg.checkpoint)
        raise TrainingInterrupted(state.history, signals.signum_of(exc)) from exc
    except DivergedError:
        if cfg.checkpoint is not None:  # the last finite epoch, to resume with a smaller lr
            with signals.deferred():
                state.save(cfg.checkpoint)
        raise
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        state.restore()  # the weights of the last finished epoch, as for Ctrl-C
        raise explain_failure(
            exc,
            spec.sizes,
            spec.dtype,
            spec.xp,
            n=int(data[0].shape[0]),
            batch_size=cfg.batch_size,
            dropout=cfg.dropout,
        ) from exc

"""The exceptions gpumlp raises beyond ValueError/TypeError, each carrying what a caller needs.

All of them live here, below every other module, so any module can raise them and a caller can
catch them from ``gpumlp`` directly.
"""

from __future__ import annotations

from .history import History

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "DataFileShrank",
    "DivergedError",
    "OutOfMemory",
    "TrainingInterrupted",
]


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here (the message says why)."""


class CheckpointError(ValueError):
    """A model or checkpoint file is missing, damaged, of an unknown format, or does not fit."""


class DataFileShrank(RuntimeError):
    """A data file that training reads as it goes (``X.npy``) became shorter than its header
    declares; training stopped, keeping the last finished epoch (checkpointed, if asked).

    Attributes
    ----------
    path : str
        The file.
    size, now : int
        Its size in bytes when it was opened, and now.
    history : History or None
        The finished epochs, once training stopped (None when it had not begun).
    saved : str or None
        The checkpoint they were saved to.
    """

    def __init__(
        self,
        path: str,
        size: int,
        now: int,
        *,
        history: History | None = None,
        saved: str | None = None,
        advice: str = "",
    ) -> None:
        text = f"{path} shrank from {size:,} to {now:,} bytes during training"
        if history is not None:
            kept = history.finished()
            text += f"; {kept} saved to {saved}" if saved else f"; the network keeps {kept}"
        super().__init__(text + (f"; {advice}" if advice else ""))
        self.path, self.size, self.now = path, size, now
        self.history, self.saved = history, saved

    def advise(self, advice: str) -> DataFileShrank:
        """The same error, its message ending with ``advice`` (what to do next)."""
        return DataFileShrank(
            self.path, self.size, self.now, history=self.history, saved=self.saved, advice=advice
        )


class DivergedError(RuntimeError):
    """Training diverged; the network holds the weights of the last finite epoch.

    Attributes
    ----------
    epoch : int
        The 0-based epoch that diverged.
    lr : float
        Its learning rate.
    cause : str
        What was seen and what to change, e.g. "the training cost became NaN or inf; try a
        smaller lr".
    history : History
        The finished epochs.
    change : str or None
        The setting to change: ``"lr"``, ``"l2"``, or None when the data is the cause.
    """

    def __init__(
        self, epoch: int, lr: float, cause: str, history: History, *, change: str | None = "lr"
    ) -> None:
        kept = "the initial weights" if epoch == 0 else f"the weights of epoch {epoch - 1}"
        super().__init__(
            f"training diverged in epoch {epoch} (lr={lr:g}): {cause}; {kept} were kept"
        )
        self.epoch = epoch
        self.lr = lr
        self.cause = cause
        self.history = history
        self.change = change


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP during ``fit``: the network holds the last finished epoch
    (checkpointed, if asked).

    A ``KeyboardInterrupt``, so code that catches that still does. ``history`` holds the
    finished epochs; ``signum`` is the signal that stopped training (``signal.SIGINT`` for
    Ctrl-C).
    """

    def __init__(self, history: History, signum: int = 2) -> None:
        super().__init__(f"{history.stop_reason or 'interrupted'}; kept {history.finished()}")
        self.history = history
        self.signum = signum


class OutOfMemory(MemoryError):
    """Training needs more memory (GPU or host) than there is; the message says what and how
    much, and what would fit.

    Attributes
    ----------
    batch_size : int or None
        The batch size asked for (None when the parameters alone do not fit).
    largest_batch : int or None
        The estimated largest batch that fits (None when the free memory is unknown or not even
        the parameters fit).
    """

    def __init__(
        self, message: str, *, batch_size: int | None = None, largest_batch: int | None = None
    ) -> None:
        super().__init__(message)
        self.batch_size = batch_size
        self.largest_batch = largest_batch

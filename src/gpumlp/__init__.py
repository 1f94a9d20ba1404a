"""gpumlp: multilayer perceptrons trained by batched backpropagation on NumPy or CuPy.

The math follows Nielsen's *Neural Networks and Deep Learning*; one source runs on any
array-API namespace. ``import gpumlp`` never imports CuPy: the backend is resolved when a
:class:`Network` is made (``backend="auto"`` picks CuPy when a CUDA device is usable).

>>> import gpumlp
>>> net = gpumlp.Network([784, 30, 10], backend="numpy", seed=0)
"""

from typing import TYPE_CHECKING

from ._version import __version__
from .backend import get_namespace
from .errors import (
    BackendUnavailableError,
    CheckpointError,
    DataFileShrank,
    DivergedError,
    OutOfMemory,
    TrainingInterrupted,
)
from .history import History
from .loader import load
from .model import Network

if TYPE_CHECKING:
    from .sweeps.studies import sweep

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "DataFileShrank",
    "DivergedError",
    "History",
    "Network",
    "OutOfMemory",
    "TrainingInterrupted",
    "__version__",
    "get_namespace",
    "load",
    "sweep",
]


def __getattr__(name: str) -> object:
    """``gpumlp.sweep`` on first use: it brings the run-folder, data and download modules, which
    ``import gpumlp`` alone does not need."""
    if name == "sweep":
        from .sweeps.studies import sweep

        return sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

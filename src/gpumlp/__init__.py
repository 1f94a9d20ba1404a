"""gpumlp: multilayer perceptrons trained by batched backpropagation on NumPy or CuPy.

The math follows Nielsen's *Neural Networks and Deep Learning*; one source runs on any
array-API namespace. ``import gpumlp`` never imports CuPy: the backend is resolved when a
:class:`Network` is made (``backend="auto"`` picks CuPy when a CUDA device is usable).

>>> import gpumlp
>>> net = gpumlp.Network([784, 30, 10], backend="numpy", seed=0)
"""

__version__ = "0.1.0"

from .backend import BackendUnavailableError, get_namespace
from .checkpoint import CheckpointError
from .model import Network, load
from .train import DivergedError, History, TrainingInterrupted

__all__ = [
    "BackendUnavailableError",
    "CheckpointError",
    "DivergedError",
    "History",
    "Network",
    "TrainingInterrupted",
    "__version__",
    "get_namespace",
    "load",
]

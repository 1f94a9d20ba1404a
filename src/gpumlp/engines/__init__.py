"""The training engines: the generic step, the NumPy fast path, the CuPy kernels and
their host code, and the one place a step is chosen (:func:`select_step`)."""

from .select import check_engine, select_step

__all__ = ["check_engine", "select_step"]

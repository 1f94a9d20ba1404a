"""Loading a saved model or checkpoint as a :class:`~gpumlp.Network`, on any backend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .errors import CheckpointError
from .files.checkpoint import read_checkpoint
from .files.modeldata import DataInfo
from .files.modelfile import expected_arrays, params_from_arrays, spec_from_meta
from .inputs import Inputs, check_standardization
from .memory import check_model_fits
from .model import Network
from .targets import TargetScaling

__all__ = ["load", "network_from"]


def load(
    path: str | Path, *, backend: str | ModuleType = "auto", dtype: str | None = None
) -> Network:
    """Load a model or training checkpoint written by gpumlp, on any backend, with its classes
    and inputs' names (None each in files written before they were kept).

    ``dtype`` overrides the stored one. Every claim of the file (sizes, array shapes) is checked
    against the arrays it holds, and against free memory, before anything is allocated.
    Raises FileNotFoundError, or CheckpointError (a ValueError) naming the file.
    """
    meta, arrays = read_checkpoint(path, lambda m: expected_arrays(m, path))
    return network_from(meta, arrays, path, backend=backend, dtype=dtype)


def network_from(
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray[Any, Any]],
    path: str | Path,
    *,
    backend: str | ModuleType = "auto",
    dtype: str | None = None,
) -> Network:
    """The Network of a model file already read and checked (``meta`` and ``arrays``, as
    :func:`.checkpoint.read_checkpoint` returns them from ``path``), as :func:`load`."""
    spec = spec_from_meta(meta, path, backend=backend, dtype=dtype)
    info = DataInfo.from_meta(meta, spec.sizes, path)
    check_model_fits(spec.sizes, spec.dtype, spec.xp)
    params = params_from_arrays(spec, arrays, path)
    for prefix in ("input", "target"):  # the standardizations' values, named as in the file
        try:
            check_standardization(
                prefix, arrays.get(f"{prefix}/mean"), arrays.get(f"{prefix}/std"), spec.dtype
            )
        except ValueError as exc:
            raise CheckpointError(
                f"{str(path)!r} holds an invalid {prefix} standardization: {exc}"
            ) from None
    targets = None
    if "target/mean" in arrays:
        targets = TargetScaling(arrays["target/mean"], arrays["target/std"])
    mean, std = arrays.get("input/mean"), arrays.get("input/std")
    try:
        inputs = Inputs(spec, mean, std, scaling=targets, info=info)
    except ValueError as exc:  # classes for a regression (the standardizations are checked)
        raise CheckpointError(
            f"{str(path)!r} holds an invalid model configuration: {exc}"
        ) from None
    return Network.from_parts(spec, params, inputs)

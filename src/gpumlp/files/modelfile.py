"""What a model or checkpoint file must hold, checked in one place before anything is built.

A file (see :mod:`.checkpoint` for the container) carries JSON metadata and named arrays.
This module owns their meaning:

- the model part, in every file: ``sizes``, ``activation``, ``output_activation``, ``cost``,
  ``init``, ``dtype``, ``task`` (files without it are classification) and the arrays
  ``param/0 .. param/2L-1`` (w_0, b_0, w_1, b_1, ...), plus, for a network trained on
  standardized inputs (``standardized``), ``input/mean`` and ``input/std`` (n_0,), and for a
  regression trained on standardized targets (``targets_standardized``), ``target/mean`` and
  ``target/std`` (n_L,); and, when known, ``classes``, ``features``, ``data`` and ``label``
  (:mod:`.modeldata`, which checks them);
- the training part, in checkpoints: ``epoch``, ``optimizer`` (``name``, ``scalars``), ``hyper``,
  ``schedule``, ``early``, ``rng``, ``history``, ``dropout_key``, and the arrays
  ``opt/<buffer>/<i>`` and ``best/<i>``.

:func:`expected_arrays` turns checked metadata into the exact names and shapes the file must
hold, so the reader inflates nothing else and nothing larger; every problem is a
:class:`~gpumlp.errors.CheckpointError` naming the file and the key.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from .._checks import check_params
from .._version import __version__
from ..backend import DTYPES, to_device, to_host
from ..config import ModelSpec
from ..errors import CheckpointError
from ..history import ALL_FIELDS
from ..metrics import TASKS
from ..network import Params
from ..optim import OPTIMIZERS, get_optimizer

__all__ = [
    "check_same_network",
    "check_train_meta",
    "expected_arrays",
    "model_meta",
    "params_from_arrays",
    "params_to_host",
    "spec_from_meta",
]

Shape = tuple[int, ...]


def _where(path: str | os.PathLike[str]) -> str:
    return repr(str(path))


def model_meta(spec: ModelSpec, arrays: Mapping[str, Any] = MappingProxyType({})) -> dict[str, Any]:
    """The model part of a file's metadata for ``spec``, whose standardizations (``input/*``,
    a regression's ``target/*``) are among the named host ``arrays`` the file holds."""
    return {
        "library": __version__,
        "sizes": list(spec.sizes),
        "activation": spec.activation,
        "output_activation": spec.output_activation,
        "cost": spec.cost.name,
        "init": spec.init,
        "dtype": spec.dtype,
        "task": spec.task,
        "standardized": "input/mean" in arrays,
        "targets_standardized": "target/mean" in arrays,
    }


def params_to_host(params: Params, prefix: str = "param") -> dict[str, np.ndarray[Any, Any]]:
    """``params``' tensors as host arrays named ``prefix/0``, ``prefix/1``, ... (w_0, b_0, ...)."""
    return {f"{prefix}/{i}": to_host(t) for i, t in enumerate(params.arrays())}


def _sizes(meta: Mapping[str, Any], path: str | os.PathLike[str]) -> list[int]:
    if "sizes" not in meta:
        raise CheckpointError(f"{_where(path)} lacks model metadata 'sizes'")
    sizes, invalid = meta["sizes"], f"{_where(path)} holds an invalid model configuration"
    if not isinstance(sizes, list) or len(sizes) < 2:
        raise CheckpointError(f"{invalid}: sizes must be a list of 2 or more, got {sizes!r:.200}")
    for i, n in enumerate(sizes):
        if not _is_int(n, 1):
            raise CheckpointError(f"{invalid}: sizes[{i}] must be an integer >= 1, got {n!r}")
    return sizes


def spec_from_meta(
    meta: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    backend: str | ModuleType | None = "auto",
    dtype: str | None = None,
) -> ModelSpec:
    """Check the model part of ``meta`` and build the :class:`ModelSpec` it describes.

    Raises CheckpointError: "lacks model metadata 'cost'", "holds an invalid model
    configuration: ..." (naming the file).
    """
    sizes = _sizes(meta, path)
    for key in ("output_activation", "cost", "dtype", *(("activation",) if len(sizes) > 2 else ())):
        if key not in meta:
            raise CheckpointError(f"{_where(path)} lacks model metadata {key!r}")
    try:
        return ModelSpec.build(
            sizes,
            activation=meta["activation"] if len(sizes) > 2 else "sigmoid",
            output_activation=meta["output_activation"],
            cost=meta["cost"],
            init=meta.get("init", "normal"),
            dtype=dtype or meta["dtype"],
            backend=backend,
            task=_task(meta, path),
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{_where(path)} holds an invalid model configuration: {exc}"
        ) from None


def _task(meta: Mapping[str, Any], path: str | os.PathLike[str]) -> str:
    """The file's task: ``task``, "classification" in files written before it was kept."""
    if (task := meta.get("task", "classification")) not in TASKS:
        raise CheckpointError(f"{_where(path)} holds an invalid model configuration: 'task' "
                              f"must be one of {list(TASKS)}, got {task!r:.100}")  # fmt: skip
    return str(task)


def check_same_network(
    meta: Mapping[str, Any], spec: ModelSpec, path: str | os.PathLike[str]
) -> None:
    """Refuse a file written for another network (sizes, activations, cost, task)."""
    mine = model_meta(spec)
    theirs = dict(meta) | {"task": _task(meta, path)}
    for key in ("sizes", "activation", "output_activation", "cost", "task"):
        if key == "activation" and len(spec.sizes) == 2:
            continue
        if theirs.get(key) != mine[key]:
            raise CheckpointError(
                f"{_where(path)} is for a network with {key}={meta.get(key)!r}, "
                f"but this network has {key}={mine[key]!r}"
            )


def _param_shapes(sizes: list[int]) -> list[Shape]:
    return [s for a, b in itertools.pairwise(sizes) for s in ((b, a), (b,))]


def expected_arrays(
    meta: Mapping[str, Any], path: str | os.PathLike[str], *, training: bool = False
) -> dict[str, tuple[Shape, bool]]:
    """The arrays a file with this metadata must (True) or may (False) hold, with their shapes.

    ``training`` also checks the training part of ``meta`` (:func:`check_train_meta`). A file
    holding any other array, or one of another shape, is refused before it is read.
    """
    sizes, invalid = _sizes(meta, path), f"{_where(path)} holds an invalid model configuration"
    flags = {key: meta.get(key, False) for key in ("standardized", "targets_standardized")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise CheckpointError(f"{invalid}: {key!r} must be true or false, got {value!r:.100}")
    if flags["targets_standardized"] and _task(meta, path) != "regression":
        raise CheckpointError(f"{invalid}: 'targets_standardized' is true, but its task is "
                              "classification (only a regression's targets are)")  # fmt: skip
    shapes = _param_shapes(sizes)
    want = {f"param/{i}": (s, True) for i, s in enumerate(shapes)}
    want |= {f"input/{k}": ((sizes[0],), flags["standardized"]) for k in ("mean", "std")}
    want |= {f"target/{k}": ((sizes[-1],), flags["targets_standardized"]) for k in ("mean", "std")}
    if "epoch" in meta or training:
        check_train_meta(meta, path)
        names = get_optimizer(meta["optimizer"]["name"]).buffers
        want |= {f"opt/{b}/{i}": (s, True) for b in names for i, s in enumerate(shapes)}
        want |= {f"best/{i}": (s, False) for i, s in enumerate(shapes)}
    return want


def params_from_arrays(
    spec: ModelSpec,
    arrays: Mapping[str, np.ndarray[Any, Any]],
    path: str | os.PathLike[str],
    prefix: str = "param",
) -> Params:
    """The parameters stored under ``prefix`` as device arrays of ``spec``, checked.

    Raises CheckpointError: "lacks parameter 'param/3'", "holds invalid parameters: weights[0]
    must have shape (5, 4) ...", "... biases[0] contains NaN ...".
    """
    n = 2 * (len(spec.sizes) - 1)
    try:
        tensors = [arrays[f"{prefix}/{i}"] for i in range(n)]
    except KeyError as exc:
        raise CheckpointError(f"{_where(path)} lacks parameter {exc}") from None
    try:
        host = check_params(spec.sizes, tensors[0::2], tensors[1::2], spec.dtype)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{_where(path)} holds invalid parameters: {exc}") from None
    return Params.from_arrays([to_device(t, spec.xp) for t in host])


# -- the training part's schema ----------------------------------------------------------------
# Each key: a check of its value, and what it must be (in the message). Numbers are JSON's: an
# int is not a bool, and NaN is never a valid state.


def _is_int(v: Any, low: int = 0, high: int | None = None) -> bool:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= low
    return ok and (high is None or v < high)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


def _dict_of(checks: Mapping[str, Callable[[Any], bool]]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(k in v and ok(v[k]) for k, ok in checks.items())


def _is_lr(v: Any) -> bool:
    return _is_num(v) and math.isfinite(v) and v > 0


def _optimizer(v: Any) -> bool:
    """The optimizer's name, and its step counts (:attr:`Optimizer.scalars`), no others."""
    name = v.get("name") if isinstance(v, dict) else None
    if not isinstance(name, str) or name not in OPTIMIZERS:
        return False
    got, want = v.get("scalars"), get_optimizer(name).scalars
    return isinstance(got, dict) and set(got) == set(want) and all(map(_is_int, got.values()))


def _rng(v: Any) -> bool:
    try:  # the state a PCG64 accepts (gpumlp's host RNG is numpy.random.default_rng)
        np.random.PCG64().state = v
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


def _history(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("epochs"), list)
        and all(isinstance(r, dict) and _is_int(r.get("epoch")) for r in v["epochs"])
        and all(r.get(k) is None or _is_num(r[k]) for r in v["epochs"] for k in ALL_FIELDS[1:])
        and isinstance(v.get("stop_reason", ""), str | None)
        and (v.get("seed") is None or _is_int(v["seed"]))
        and v.get("scored_set") in (None, "validation", "test")
        and v.get("task") in (None, *TASKS)
    )


_TRAIN_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epoch": (_is_int, "an integer >= 0"),
    "optimizer": (
        _optimizer,
        f"{{'name': one of {'/'.join(OPTIMIZERS)}, 'scalars': {{}} ({{'t': integer >= 0}} for "
        "adam)}",
    ),
    "schedule": (
        _dict_of({"lr": _is_lr, "current": _is_lr, "best": _is_num, "since_best": _is_int}),
        "{'lr', 'current': numbers > 0, 'best': a number, 'since_best': integer >= 0}",
    ),
    "early": (
        lambda v: (
            v is None
            or _dict_of(
                {"best": _is_num, "best_epoch": lambda e: _is_int(e, -1), "since_best": _is_int}
            )(v)
        ),
        "null or {'best': a number, 'best_epoch': integer >= -1, 'since_best': integer >= 0}",
    ),
    "rng": (_rng, "a NumPy PCG64 bit generator state"),
    "history": (
        _history,
        "{'epochs': [records: an integer 'epoch', numbers or null], 'stop_reason': text or "
        "null, 'seed': integer or null, 'scored_set': 'validation' or 'test', 'task': "
        "'classification' or 'regression'}",
    ),
    "hyper": (lambda v: isinstance(v, dict), "a dict of settings"),
    "dropout_key": (lambda v: v is None or _is_int(v, 0, 2**64), "null or an integer >= 0"),
    "dtype": (lambda v: v in DTYPES, f"one of {DTYPES}"),
}


def check_train_meta(meta: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Check the training part of a checkpoint's metadata against its schema.

    Raises CheckpointError naming the file and the first key that is missing or wrong, or the
    history that does not match ``epoch`` (one record per finished epoch, numbered from 0).
    """
    if "epoch" not in meta or "optimizer" not in meta:
        raise CheckpointError(f"{_where(path)} holds a model, not a resumable training checkpoint")
    for key, (ok, what) in _TRAIN_SCHEMA.items():
        if key not in meta and key != "dropout_key":
            raise CheckpointError(f"{_where(path)} is not a complete checkpoint: it lacks {key!r}")
        if not ok(meta.get(key)):
            raise CheckpointError(
                f"{_where(path)} has an invalid checkpoint: {key!r} must be {what}, "
                f"got {meta[key]!r:.200}"
            )
    numbers = [r["epoch"] for r in meta["history"]["epochs"]]
    if len(numbers) != meta["epoch"] or numbers != list(range(len(numbers))):
        raise CheckpointError(
            f"{_where(path)} has an invalid checkpoint: 'epoch' is {meta['epoch']}, but "
            f"'history' holds {len(numbers)} epoch records (it must hold one for each "
            "finished epoch, numbered from 0)"
        )

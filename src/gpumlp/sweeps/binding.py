"""What a study records of the sweep that made it, so that a rerun, or another machine's worker,
joins only the same sweep: the space, the fixed flags (with the ``seed``, which a study given
none takes from its name) and the data's fingerprint. A flag that differs between the machines
of one sweep (``data``'s path, ``backend``, ``engine``) is not compared; the data itself is.

No Optuna here: a study is anything with ``user_attrs``, ``set_user_attr``, ``trials`` and
``study_name``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data.sources import DataSet
from ..settings import DEFAULTS
from .searchspace import Dimension

__all__ = ["bind_study", "data_fingerprint", "default_seed"]

_LOCAL = ("data", "backend", "engine")  # may differ between the machines of one sweep
SAMPLED_ROWS = 1024
"""Rows of each split's inputs the fingerprint reads, evenly spaced (its labels are read whole):
a memory-mapped data set of gigabytes is not read through to tell it from another."""


def default_seed(study_name: str) -> int:
    """The seed of a study given none: from its name, the same for every worker anywhere."""
    return zlib.crc32(study_name.encode())


def data_fingerprint(data: DataSet) -> dict[str, Any]:
    """What tells ``data`` from other data wherever it is stored: each split's rows and input
    width, and a SHA-256 of the shapes, dtypes, all labels or targets and
    :data:`SAMPLED_ROWS` evenly spaced input rows of every split."""
    digest = hashlib.sha256()
    rows: dict[str, list[int]] = {}
    splits = {"train": data.train, "validation": data.validation, "test": data.test}
    for name, split in splits.items():
        if split is None:
            continue
        x, y = split
        rows[name] = [int(x.shape[0]), *map(int, x.shape[1:])]
        picked = np.unique(np.linspace(0, len(x) - 1, min(len(x), SAMPLED_ROWS)).astype(np.int64))
        for part in (x[picked] if len(x) else x, y):
            part = np.ascontiguousarray(part)
            digest.update(f"{name}|{part.shape}|{part.dtype.str}|".encode())
            digest.update(part.tobytes())
    return {"rows": rows, "sha256": digest.hexdigest()}


def _described(fingerprint: Mapping[str, Any]) -> str:
    rows = fingerprint.get("rows", {})
    return ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in rows.items())


def bind_study(study: Any, dims: Mapping[str, Dimension], fixed: Mapping[str, Any],
               data: DataSet, source: str) -> None:  # fmt: skip
    """Record the space, the fixed flags (with their ``seed``) and ``data``'s fingerprint on a
    new study, or check that an existing one has the same (except the flags that may differ
    between machines). Raises ValueError naming what differs."""
    space = {k: d.to_dict() for k, d in dims.items()}
    mine = {"space": space, "fixed": {k: v for k, v in fixed.items() if k not in _LOCAL}}
    fingerprint = data_fingerprint(data)
    stored = study.user_attrs.get("gpumlp")
    if stored is None:
        if study.trials:
            raise ValueError(f"study {study.study_name!r} was not made by gpumlp sweep")
        record = mine | {"data": fixed.get("data"), "data_fingerprint": fingerprint}
        study.set_user_attr("gpumlp", record)
        return
    name = study.study_name
    if stored["space"] != space:
        raise ValueError(
            f"study {name!r} searches {stored['space']}, not what {source} says ({space}): "
            "rerun with the same space, or choose another --study or --out"
        )
    for key in sorted(set(stored["fixed"]) | set(mine["fixed"])):
        was, now = (f.get(key, DEFAULTS.get(key)) for f in (stored["fixed"], mine["fixed"]))
        if was != now:
            raise ValueError(
                f"study {name!r} was started with --{key.replace('_', '-')} {was}, not {now}: "
                "rerun with the same flags, or choose another --study or --out"
            )
    was = stored.get("data_fingerprint")
    if was is None:  # a study of an earlier gpumlp: its data is the one it runs on from now on
        study.set_user_attr("gpumlp", stored | {"data_fingerprint": fingerprint})
    elif was != fingerprint:
        given = f"--data {fixed['data']}" if fixed.get("data") else "the data given"
        was_rows, now_rows = _described(was), _described(fingerprint)
        now = now_rows if now_rows != was_rows else "the same sizes, other values"
        raise ValueError(
            f"study {name!r} was started on other data: {stored.get('data')} ({was_rows}), not "
            f"{given} ({now}): rerun with its data, or choose another --study or --out"
        )

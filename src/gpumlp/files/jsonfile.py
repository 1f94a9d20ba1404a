"""Reading the small JSON files gpumlp keeps beside its models (a run folder's ``args.json``
and ``history.json``), as untrusted input.

The file is opened through :func:`gpumlp.files.safeio.open_regular` (a FIFO, device or folder is
refused at once, never waited on), read up to a size limit, and must be UTF-8 JSON nested no
deeper than :data:`MAX_DEPTH`: whatever is wrong, the error is one line naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .safeio import open_regular

__all__ = ["JSON_LIMIT", "MAX_DEPTH", "parse_json", "read_json"]

JSON_LIMIT = 64 << 20
"""The most bytes such a file may hold, and a checkpoint's metadata too, which holds the same
history as ``history.json`` (``args.json`` is < 1 KiB)."""

MAX_DEPTH = 32
"""The deepest nesting of lists and objects read (gpumlp writes 3 levels at most)."""


def read_json(path: Path, what: str, *, limit: int = JSON_LIMIT) -> Any:
    """The JSON value the file ``path`` holds; ``what`` names it in messages ("run flags").

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        Naming ``what`` and ``path``: not a regular file (a FIFO, a folder, ...), more than
        ``limit`` bytes, not UTF-8, not JSON, or nested deeper than :data:`MAX_DEPTH`.
    OSError
        When it cannot be read (permissions, I/O errors); the error names the file.
    """
    where = f"{what} {str(path)!r}"
    with open_regular(path, what) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"{where} holds more than {limit:,} bytes: not a file gpumlp wrote")
    return parse_json(raw, where)


def parse_json(raw: bytes, where: str) -> Any:
    """``raw``, UTF-8 JSON, parsed. ValueError naming ``where`` (the file, or its part) and the
    cause when it is not UTF-8, not JSON, or nested deeper than :data:`MAX_DEPTH`."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{where} is not UTF-8 text (byte {exc.start} is {raw[exc.start]:#04x})"
        ) from None
    try:
        value = json.loads(text)
    except RecursionError:  # json's decoder recurses per level: a deep file exhausts the stack
        value = None
    except ValueError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from None
    else:
        if not _too_deep(value):
            return value
    raise ValueError(f"{where} nests lists or objects more than {MAX_DEPTH} deep")


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests lists or dicts past :data:`MAX_DEPTH`, walked without
    recursion (a value that deep breaks anything that walks it recursively, ``repr`` too)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False

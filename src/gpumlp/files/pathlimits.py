"""The length limits of paths a command line names, checked before anything is created.

An operating system refuses a path with a name longer than ``NAME_MAX`` bytes (255 on most
file systems) or, whole, longer than ``PATH_MAX`` (4096 on Linux, counting a final NUL), with
an errno that names neither the flag nor the limit; :func:`check_path_length` refuses such a
path up front, naming both.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_path_length", "shown"]

_NAME_MAX, _PATH_MAX = 255, 4096  # where pathconf cannot tell


def shown(text: str, width: int = 60) -> str:
    """``text`` shortened to about ``width`` characters for a message (its start and end)."""
    if len(text) <= width:
        return text
    return f"{text[: width - 20]}...{text[-17:]}"


def _limit(path: Path, name: str, default: int) -> int:
    """``os.pathconf``'s ``name`` for the nearest existing folder at or above ``path``."""
    for folder in (path, *path.parents):
        try:
            return os.pathconf(folder, name)
        except (OSError, ValueError):
            continue
    return default


def check_path_length(value: str, flag: str, *, room: int = 0) -> None:
    """Refuse (ValueError naming ``flag`` and the limit) the path ``value`` when one of its
    names is longer than ``NAME_MAX`` bytes, or when, made absolute and followed by ``room``
    more bytes (the names of files gpumlp writes in it), it is longer than ``PATH_MAX`` allows.
    """
    path = Path(os.path.abspath(value))
    for part in Path(value).parts:
        n, limit = len(os.fsencode(part)), _limit(path, "PC_NAME_MAX", _NAME_MAX)
        if n > limit:
            raise ValueError(
                f"{flag} {shown(value)!r}: the name {shown(part, 40)!r} is {n:,} bytes long, "
                f"past NAME_MAX, the {limit:,} bytes a name may have on this file system"
            )
    n, limit = len(os.fsencode(str(path))) + room, _limit(path, "PC_PATH_MAX", _PATH_MAX)
    if n >= limit:
        more = " with the names of the files gpumlp writes in it" if room else ""
        raise ValueError(
            f"{flag} {shown(value)!r} is too long: {n:,} bytes as an absolute path{more}, past "
            f"PATH_MAX, the {limit - 1:,} bytes a path may have on this system"
        )

"""Where a sweep's study is: the storage URL (the SQLite file ``OUT/study.db`` by default,
PostgreSQL or any SQLAlchemy URL for workers on several machines; never a study in memory,
which ends with the process and which no other worker can reach), a SQLite file checked before
the database is opened, the sweep folder's ``sweep.json``, and failures of the storage worded
as one ValueError naming the file or URL and the database's own reason.

Nothing here imports Optuna or SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..atomicio import atomic_write_bytes
from ..files.jsonfile import read_json
from ..files.safeio import open_regular

__all__ = ["SWEEP_FILE", "database_reason", "masked", "read_sweep_file", "sqlite_file",
           "storage_errors", "storage_url", "where", "with_driver", "write_sweep_file"]  # fmt: skip


def storage_url(out: Path, storage: str | None) -> str:
    """``storage`` (its PostgreSQL driver named, :func:`with_driver`), else the SQLite file
    ``out/study.db`` as an absolute SQLAlchemy URL. ValueError for a study in memory
    (``sqlite://``, ``sqlite:///:memory:``): gone at exit, and no other worker can reach it."""
    if storage is None:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    sqlite_file(storage)
    return with_driver(storage)


_SQLITE_MAGIC = b"SQLite format 3\0"


SWEEP_FILE = "sweep.json"
"""The file of a sweep folder that says where its study is: ``{"study": name, "storage": URL
(password masked), "space": SPACE.toml's path}``."""
_SWEEP_FILE_LIMIT = 1 << 16


def write_sweep_file(out: Path, name: str, url: str, space: str) -> None:
    """Write ``out/sweep.json`` for the study ``name`` in ``url``, searching ``space``."""
    info = {"study": name, "storage": masked(url), "space": space}
    atomic_write_bytes(out / SWEEP_FILE, json.dumps(info, indent=1).encode())


def read_sweep_file(folder: Path) -> dict[str, str] | None:
    """``folder/sweep.json`` as :func:`write_sweep_file` wrote it, or None where there is none.
    Raises ValueError naming the file when it is not one (not a regular file, over 64 KiB, not
    UTF-8, not JSON, nested too deep, not an object of strings)."""
    path = folder / SWEEP_FILE
    named = repr(str(path))
    if not os.path.lexists(path):
        return None
    try:
        info = read_json(path, "sweep file", limit=_SWEEP_FILE_LIMIT)
    except OSError as exc:
        raise ValueError(f"{named} cannot be read: {exc.strerror or exc}") from None
    keys = ("study", "storage", "space")
    if not isinstance(info, dict) or not all(isinstance(info.get(k, ""), str) for k in keys):
        got = repr(info)
        raise ValueError(
            f'{named} is not a sweep file: expected {{"study": name, "storage": URL, '
            f'"space": path}}, strings, got {got[:60] + "..." * (len(got) > 60)}'
        )
    return info


def sqlite_file(url: str, source: str = "") -> Path | None:
    """The file of a SQLite ``url`` (SQLAlchemy's ``sqlite:///path``), None for another
    database. Raises ValueError (naming ``source``, where the URL was read, as
    :func:`storage_errors`) for a study in memory, or a file that exists and is not a SQLite
    database (checked on the opened file: a FIFO is refused, not waited on)."""
    name = _sqlite_name(url)
    if name is None:
        return None
    if name in ("", ":memory:") or ":memory:" in name or "mode=memory" in url:
        raise ValueError(
            f"--storage {url}{source}: a study in memory ends with this process and no worker "
            "can share it: give a file, sqlite:///PATH, or leave --storage out (sqlite in --out)"
        )
    path = Path(name)
    if path.exists():
        try:
            with open_regular(path, "study file") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise ValueError(f"{where(url)}{source}: {exc.strerror or exc}") from None
        if head and head != _SQLITE_MAGIC:
            raise ValueError(f"{where(url)}{source}: file is not a database (not SQLite's)")
    return path


def _sqlite_name(url: str) -> str | None:
    """The database of a SQLite URL as SQLAlchemy reads it (``sqlite:///x.db``: ``x.db``,
    ``sqlite://``: empty, a ``file:`` URI's path), None for another database."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite":
        return None
    return rest.partition("/")[2].partition("?")[0].removeprefix("file:")


def where(url: str) -> str:
    """The study's storage in words: its SQLite file, else the URL without a password."""
    name = _sqlite_name(url)
    return f"--storage {masked(url)}" if name is None else f"study file {name!r}"


def database_reason(exc: BaseException) -> str | None:
    """The reason a database gave for ``exc`` (the DB-API error's first line, without
    SQLAlchemy's decorations), or None when ``exc`` does not come from the storage."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
    modules = [type(e).__module__.split(".")[0] for e in chain]
    if not {"sqlalchemy", "sqlite3", "psycopg", "psycopg2"} & set(modules):
        return None
    for e, module in zip(chain, modules, strict=True):
        if module not in ("sqlalchemy", "optuna"):  # the DB-API driver's own error
            return (str(e).strip() or type(e).__name__).splitlines()[0]
    text = (str(chain[-1]).strip() or type(chain[-1]).__name__).splitlines()[0]
    return re.sub(r"^\([\w.]+\) ", "", text)


@contextlib.contextmanager
def storage_errors(url: str, source: str = "") -> Iterator[None]:
    """Turn a failure of the storage ``url`` in the block (SQLAlchemy's, Optuna's
    ``StorageInternalError``, the driver's) into a ValueError naming the study file or URL
    (and ``source``, where the URL was read: `` (named by 'out/sweep.json')``) and the
    database's reason: "study file '/x/study.db': attempt to write a readonly database"."""
    try:
        yield
    except Exception as exc:
        reason = database_reason(exc)
        if reason is None:
            raise
        raise ValueError(f"{where(url)}{source}: {reason}") from None


def with_driver(url: str) -> str:
    """``url`` with the PostgreSQL driver that is installed: SQLAlchemy reads a bare
    ``postgresql://`` (or ``postgres://``) as psycopg2's, so where only psycopg 3 is installed
    (``pip install 'psycopg[binary]'``) it becomes ``postgresql+psycopg://``. Others as given."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        return url
    found = importlib.util.find_spec
    driver = "+psycopg" if found("psycopg2") is None and found("psycopg") is not None else ""
    return f"postgresql{driver}://{rest}"


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages and files)."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)

"""The fake CuPy (``tests/cuda_emu/fakecupy``) checked against the real CuPy 14, without a GPU.

CuPy imports without a CUDA device, so its surface and a few behaviours can be read on any
machine. ``GPUMLP_REAL_CUPY`` names a folder holding it, installed apart from the test
environment (``.ci/run`` does this)::

    python3 -m pip install --no-deps --target DIR cupy-cuda13x fastrlock cuda-pathfinder

Without the variable every test here skips; set to a folder without CuPy, they fail. The real
CuPy never enters this process, where the fake is installed as ``cupy``: this file, run as a
script with that folder first on ``sys.path``, describes it as JSON (:func:`_describe_real`).

What is compared:

- surface: every public name of the fake's modules, of its classes (the dunders they define
  too) and of the instances it makes exists in CuPy, of the same kind (module, class, ufunc,
  routine, value; a plain function where CuPy has a ufunc offers less, which is allowed); a
  class has the same module, name and Python bases; a literal value is equal; NumPy's own
  objects (dtypes, ``finfo``, constants) stay NumPy's.
- signatures the fake declares itself: every call the fake accepts binds in CuPy (same
  positional names, no keyword or ``*args`` that CuPy lacks, nothing optional that CuPy
  requires, the same literal defaults). CuPy's Cython routines carry their signature in the
  docstring's first line, which is parsed. Not comparable: ufuncs (no signature: ``nin`` and
  ``nout`` are compared), CuPy's operator dunders (no signature), and the fake's wrappers of
  NumPy functions, which keep NumPy's parameters (``where=``, ``like=``, ``initial=``, ...).
- what gpumlp uses: each ``cupy.*`` chain in ``src/gpumlp`` exists in CuPy and each call binds;
  each ``xp.*`` name resolves in ``array_api_compat.cupy`` as with the fake (CuPy's own object
  or array-api-compat's wrapper) and its calls bind; array-api-compat resolves every name the
  same way with both (a NumPy name the fake had and CuPy lacks would change what runs).
- behaviours that need no device, on a real ``cupy.ndarray`` over device memory never read:
  implicit conversion to NumPy refused, host arrays refused, an element a 0-d array, views'
  metadata and addresses, array-api-compat's view of the array, the out-of-memory error, dtype
  promotion by ``result_type`` and friends, the CUDA status names the fake raises.

Not comparable without a GPU: whatever runs a kernel or allocates (results, reductions as 0-d
arrays, dtype promotion of operations, mixing host arrays into operations, device properties).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REAL_ENV = "GPUMLP_REAL_CUPY"
HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src" / "gpumlp"
_MISSING = object()
pytestmark = pytest.mark.skipif(
    not os.environ.get(REAL_ENV, "").strip(),
    reason=f"{REAL_ENV} is not set: point it at a folder holding the real CuPy 14 (pip install "
    "--no-deps --target DIR cupy-cuda13x fastrlock cuda-pathfinder); .ci/run does",
)

# Deliberate differences, path -> why. A listed path that stops differing fails as stale.
FAKE_ONLY = {
    "cupy.stats": "the fake's counters of syncs, copies and launches",
    "cupy.ndarray.__cuda_emu_array__": "the emulator's access to the buffer",
    "cupy.cuda.MemoryPool.track": "how the fake's arrays account their bytes to the pool",
}
KNOWN_SIGNATURES = {
    "cupy.ufunc": "the fake wraps a NumPy ufunc; CuPy builds one from CUDA operations",
}

# -- describing either CuPy (run in both processes) ----------------------------------------------


def _literal(value: Any) -> str | None:
    """``repr(value)`` when it reads back as an equal literal (None, numbers, str, tuples)."""
    try:
        text = repr(value)
        return text if ast.literal_eval(text) == value else None
    except Exception:
        return None


def _split_top(text: str) -> list[str]:
    """``text`` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{" or ch in ")]}":
            depth += 1 if ch in "([{" else -1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


_DOC_SIGNATURE = re.compile(r"^(?:[\w.]+\.)?(\w+)\((.*)\)\s*(?:->.*)?$")


def _doc_params(obj: Any, name: str) -> list[list[Any]] | None:
    """The parameters in Cython's ``embedsignature`` first docstring line, C types dropped."""
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    m = _DOC_SIGNATURE.match(lines[0].strip()) if lines else None
    if m is None or m.group(1) not in (name, "__init__"):
        return None
    params: list[list[Any]] = []
    kind = "POSITIONAL_OR_KEYWORD"
    for part in (p.strip() for p in _split_top(m.group(2))):
        left, eq, default = part.partition("=")
        token = left.split(":")[0].split()[-1] if left.strip() else ""
        if token == "/":
            params = [[n, "POSITIONAL_ONLY", *rest] for n, _, *rest in params]
        elif token == "*":
            kind = "KEYWORD_ONLY"
        elif token.startswith("**"):
            params.append([token[2:], "VAR_KEYWORD", False, None])
        elif token.startswith("*"):
            params.append([token[1:], "VAR_POSITIONAL", False, None])
            kind = "KEYWORD_ONLY"
        elif token.isidentifier():
            try:
                value = repr(ast.literal_eval(default.strip())) if eq else None
            except (ValueError, SyntaxError):
                value = None
            params.append([token, kind, bool(eq), value])
        elif token:
            return None  # not a signature (a ufunc's "[, out]" notation)
    return params


def _public(params: list[list[Any]]) -> list[list[Any]]:
    """Without ``self``/``cls`` and private keyword parameters (``_obj``, ``_function``)."""
    if params and params[0][0] in ("self", "cls") and params[0][1].startswith("POSITIONAL"):
        params = params[1:]
    return [p for p in params if not (p[0].startswith("_") and not p[1].startswith("VAR"))]


def _var_only(params: list[list[Any]]) -> bool:
    return all(p[1].startswith("VAR") for p in params)


def _params(obj: Any, name: str) -> list[list[Any]] | None:
    """[name, kind, has a default, the default as a literal] per parameter; None when neither
    ``inspect`` nor the docstring tells."""
    try:
        params = [
            [p.name, p.kind.name, p.default is not p.empty, _literal(p.default)]
            for p in inspect.signature(obj).parameters.values()
        ]
        params = [[n, k, has, d if has else None] for n, k, has, d in params]
    except (TypeError, ValueError):
        params = None
    if params is None or _var_only(_public(params)):
        params = _doc_params(obj, name) or params
    return None if params is None else _public(params)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(obj: Any, name: str, owner: Any, twin: Any) -> dict[str, Any]:
    """Kind and what can be compared of ``obj``, found as ``owner.name``; ``twin`` is what
    NumPy has under that name."""
    static = inspect.getattr_static(owner, name, None) if isinstance(owner, type) else None
    d: dict[str, Any] = {"numpy": twin is not _MISSING and obj is twin}
    if inspect.ismodule(obj):
        d["kind"] = "module"
    elif isinstance(obj, type):
        bases = [_qualified(c) for c in obj.__mro__[1:]]
        d.update(kind="class", name=_qualified(obj), bases=bases, params=_params(obj, name))
    elif isinstance(static, property) or inspect.isdatadescriptor(static):
        d["kind"] = "value"
    elif type(obj).__name__ == "_GUFunc" or (
        hasattr(obj, "nin") and getattr(obj, "signature", None)
    ):
        d["kind"] = "gufunc"
    elif callable(obj) and hasattr(obj, "nin") and hasattr(obj, "nout"):
        d.update(kind="ufunc", nin=obj.nin, nout=obj.nout)
    elif callable(obj):
        d.update(kind="routine", params=_params(obj, name))
    else:
        d.update(kind="value", value=_literal(obj))
    return d


def _resolve(path: str, made: dict[str, Any]) -> tuple[Any, Any]:
    """(owner, object) of a dotted path from ``cupy``; an attribute a class lacks is looked up
    on its instance in ``made``, when there is one."""
    parts = path.split(".")
    owner, obj = None, sys.modules[parts[0]]
    for i, part in enumerate(parts[1:], 1):
        owner, value = obj, getattr(obj, part, _MISSING)
        if value is _MISSING and ".".join(parts[:i]) in made:
            owner = made[".".join(parts[:i])]
            value = getattr(owner, part, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"{path}: no {part!r}")
        obj = value
    return owner, obj


_TWINS = {"cupy": "numpy", "cupy.linalg": "numpy.linalg", "cupy.fft": "numpy.fft",
          "cupy.random": "numpy.random"}  # fmt: skip


def describe_paths(paths: list[str], made: dict[str, Any]) -> dict[str, Any]:
    """:func:`_describe` of each path; None for a missing one."""
    out: dict[str, Any] = {}
    for path in paths:
        try:
            owner, obj = _resolve(path, made)
        except AttributeError:
            out[path] = None
            continue
        parent, _, name = path.rpartition(".")
        twin = _MISSING
        if parent in _TWINS:
            twin = getattr(importlib.import_module(_TWINS[parent]), name, _MISSING)
        out[path] = _describe(obj, name, owner, twin)
    return out


def _array(cp: Any, shape: tuple[int, ...] = (2, 3)) -> Any:
    """A float32 ``cupy.ndarray``; the real one over device memory that is never read."""
    import numpy as np

    try:
        mem = cp.cuda.UnownedMemory(256, 4 * int(np.prod(shape)), None, 0)
        return cp.ndarray(shape, dtype=np.float32, memptr=cp.cuda.MemoryPointer(mem, 0))
    except NotImplementedError:  # the fake emulates no memptr: host memory of its own
        return cp.ndarray(shape, dtype=np.float32)


def instances(cp: Any) -> dict[str, Any]:
    """Instances, made without a device, of the classes whose attributes live on instances."""
    a = _array(cp)
    return {
        "cupy.ndarray": a,
        "cupy.cuda.Device": cp.cuda.Device(0),
        "cupy.cuda.MemoryPointer": a.data,
        "cupy.cuda.UnownedMemory": a.data.mem,
        "cupy.cuda.Stream": cp.cuda.Stream.null,
        "cupy.cuda.MemoryPool": cp.get_default_memory_pool(),
    }


def _name(obj: Any) -> str:
    return _qualified(type(obj))


def _probes() -> dict[str, Callable[[Any, Any, Any], Any]]:
    """Behaviours that need no device: name -> f(cupy, numpy, a), ``a`` a (2, 3) float32
    array. Each returns plain data (compared for equality) or raises (type and message)."""
    import array_api_compat as compat

    def of(a: Any, views: tuple[Any, ...]) -> list[Any]:
        return [(_name(v), v.shape, v.strides, v.flags.c_contiguous, v.data.ptr - a.data.ptr)
                for v in views]  # fmt: skip

    def promotion(cp: Any, a: Any) -> list[Any]:
        pairs = [("float32", 1.0), ("float32", 1), ("float32", "float64"), ("int32", "float32"),
                 ("int64", 1.0), ("uint32", "int32"), ("float32", "int64")]  # fmt: skip
        out = [str(cp.result_type(getattr(cp, x), y if isinstance(y, float | int) else
                                  getattr(cp, y))) for x, y in pairs]  # fmt: skip
        out += [str(cp.result_type(a, 2.0)), str(cp.promote_types(cp.float32, cp.int64))]
        out += [cp.can_cast(cp.float64, cp.float32), cp.can_cast(cp.int64, cp.float64, "safe")]
        return [*out, cp.isdtype(cp.float32, "real floating"), cp.issubdtype(cp.int32, cp.integer)]

    return {
        "numpy.asarray(a)": lambda cp, np, a: np.asarray(a),
        "numpy.array(a)": lambda cp, np, a: np.array(a),
        "hash(a)": lambda cp, np, a: hash(a),
        "len(a)": lambda cp, np, a: len(a),
        "len(0-d)": lambda cp, np, a: len(_array(cp, ())),
        "iter(0-d)": lambda cp, np, a: iter(_array(cp, ())),
        "a's metadata": lambda cp, np, a: (
            *(a.shape, a.strides, a.size, a.nbytes, a.ndim, a.itemsize, str(a.dtype)),
            *(a.flags.c_contiguous, a.flags.f_contiguous),
        ),
        "a's type": lambda cp, np, a: (_name(a), isinstance(a, np.ndarray), type(a) is cp.ndarray),
        "views": lambda cp, np, a: of(
            a, (a.T, a.mT, a.reshape(3, 2), a[1], a[:, 1:], a[1:], a[None], a[..., ::2])
        ),
        "an element is a 0-d array": lambda cp, np, a: of(a, (a[1, 2], a[-1, -1])),
        "a.data": lambda cp, np, a: (_name(a.data), _name(a.data.mem), a.data.mem.size),
        "a.device": lambda cp, np, a: (repr(a.device), a.device.id, a.data.device_id),
        "a.item() of 6 elements": lambda cp, np, a: a.item(),
        "a.set(list)": lambda cp, np, a: a.set([[0.0] * 3] * 2),
        "a.set(wrong shape)": lambda cp, np, a: a.set(np.zeros((3, 2), np.float32)),
        "a.set(wrong dtype)": lambda cp, np, a: a.set(np.zeros((2, 3), np.float64)),
        "copyto(a, host array)": lambda cp, np, a: cp.copyto(a, np.zeros((2, 3), np.float32)),
        "ascontiguousarray(host)": lambda cp, np, a: cp.ascontiguousarray(np.zeros(3)),
        "asnumpy(host)": lambda cp, np, a: _name(cp.asnumpy(np.zeros(2))),
        "get_array_module": lambda cp, np, a: (
            cp.get_array_module(a) is cp,
            cp.get_array_module(np.zeros(1)) is np,
        ),
        "array-api-compat on a": lambda cp, np, a: (
            *(compat.is_cupy_array(a), compat.is_numpy_array(a), compat.is_array_api_obj(a)),
            *(compat.array_namespace(a).__name__, repr(compat.device(a))),
            *(compat.is_cupy_namespace(cp), compat.is_cupy_namespace(compat.array_namespace(a))),
        ),
        "OutOfMemoryError": lambda cp, np, a: (
            str(cp.cuda.memory.OutOfMemoryError(1024, 2048, 4096)),
            isinstance(cp.cuda.memory.OutOfMemoryError(1, 2), MemoryError),
        ),
        "runtime version": lambda cp, np, a: (
            type(cp.cuda.runtime.runtimeGetVersion()).__name__,
            cp.cuda.runtime.runtimeGetVersion() // 1000,
            cp.cuda.runtime.is_hip,
        ),
        "CuPy's major version": lambda cp, np, a: cp.__version__.split(".")[0],
        "Device(0)": lambda cp, np, a: (
            cp.cuda.Device(0).id,
            cp.cuda.Device(0) == cp.cuda.Device(0),
            repr(cp.cuda.Device(0)),
        ),
        "the null stream": lambda cp, np, a: (cp.cuda.Stream.null.ptr, _name(cp.cuda.Stream.null)),
        "dtype promotion": lambda cp, np, a: promotion(cp, a),
        "finfo and iinfo": lambda cp, np, a: (
            float(cp.finfo(cp.float32).eps),
            float(cp.finfo(cp.float64).tiny),
            int(cp.iinfo(cp.int32).max),
            _name(cp.finfo(cp.float32)),
        ),
    }


def run_probes(cp: Any) -> dict[str, list[Any]]:
    """Each probe's outcome: ["ok", result] or ["raises", exception type, message]."""
    import numpy as np

    out: dict[str, list[Any]] = {}
    for name, probe in _probes().items():
        try:
            out[name] = ["ok", json.loads(json.dumps(probe(cp, np, _array(cp)), default=repr))]
        except Exception as exc:
            out[name] = ["raises", _name(exc), str(exc)]
    return out


def namespace_origins(cp: Any) -> dict[str, str]:
    """array_api_compat.cupy's names (its linalg's and fft's too): "cupy" where it hands out
    CuPy's own object of that name, else "compat" (array-api-compat's wrapper or alias)."""
    import array_api_compat.cupy as acc

    out = {}
    spaces = (("", acc, cp), ("linalg.", acc.linalg, cp.linalg), ("fft.", acc.fft, cp.fft))
    for prefix, ns, own in spaces:
        for name in dir(ns):
            obj = getattr(ns, name)
            if not name.startswith("_") and not inspect.ismodule(obj):
                out[prefix + name] = "cupy" if getattr(own, name, _MISSING) is obj else "compat"
    return out


# -- comparing ----------------------------------------------------------------------------------

_POSITIONAL = ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")


def incompatible(fake: list[list[Any]], real: list[list[Any]], dunder: bool) -> list[str]:
    """How calls that the fake accepts would fail, or mean something else, in CuPy. A dunder
    is called positionally: its parameter names do not count."""
    if dunder:
        fake, real = (
            [[n, "POSITIONAL_ONLY" if k == "POSITIONAL_OR_KEYWORD" else k, *rest]
             for n, k, *rest in params]
            for params in (fake, real)
        )  # fmt: skip
    problems, matched = [], []
    real_pos = [p for p in real if p[1] in _POSITIONAL]
    by_name = {p[0]: p for p in real if p[1] in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")}
    kinds = {p[1] for p in real}
    for i, p in enumerate(q for q in fake if q[1] in _POSITIONAL):
        r = real_pos[i] if i < len(real_pos) else None
        if r is None:
            if "VAR_POSITIONAL" not in kinds:
                problems.append(f"takes {p[0]!r} as argument {i + 1}; CuPy takes {len(real_pos)}")
        elif p[1] == "POSITIONAL_OR_KEYWORD" and (r[1] == "POSITIONAL_ONLY" or r[0] != p[0]):
            problems.append(f"names argument {i + 1} {p[0]!r}; CuPy {r[0]!r} ({r[1]})")
        else:
            matched.append((p, r))
    for p in fake:
        if p[1] == "KEYWORD_ONLY" and p[0] in by_name:
            matched.append((p, by_name[p[0]]))
        elif p[1] == "KEYWORD_ONLY" and "VAR_KEYWORD" not in kinds:
            problems.append(f"takes keyword {p[0]!r}; CuPy does not")
        elif p[1].startswith("VAR") and p[1] not in kinds:
            problems.append(f"takes {'**' if p[1] == 'VAR_KEYWORD' else '*'}{p[0]}; CuPy does not")
    for p, r in matched:
        if p[2] and not r[2]:
            problems.append(f"{p[0]!r} is optional; CuPy requires it")
        elif p[3] is not None and r[3] is not None and p[3] != r[3]:
            problems.append(f"{p[0]!r} defaults to {p[3]}; in CuPy to {r[3]}")
    covered = {id(r) for _, r in matched}
    for r in real:
        if not r[2] and not r[1].startswith("VAR") and id(r) not in covered:
            problems.append(f"CuPy requires {r[0]!r}; the fake does not take it")
    return problems


def binds(params: list[list[Any]] | None, nargs: int, keywords: list[str]) -> str | None:
    """Why a call with ``nargs`` positional arguments and ``keywords`` does not bind to
    ``params``; None when it does or the signature is unknown."""
    if params is None:
        return None
    empty = inspect.Parameter.empty
    try:
        signature = inspect.Signature(
            [inspect.Parameter(n, getattr(inspect.Parameter, k), default=0 if has else empty)
             for n, k, has, _ in params]
        )  # fmt: skip
        signature.bind(*range(nargs), **dict.fromkeys(keywords))
    except ValueError:
        return None  # a docstring signature that Python could not declare
    except TypeError as exc:
        return str(exc)
    return None


# -- the fake's side (this process) ---------------------------------------------------------------

# Dunders every class has, or compared otherwise (__init__ as the class's signature, __hash__
# by a probe).
_PLAIN_DUNDERS = {"__module__", "__doc__", "__dict__", "__weakref__", "__slots__", "__init__",
                  "__annotations__", "__qualname__", "__firstlineno__", "__static_attributes__",
                  "__hash__", "__repr__", "__str__", "__getattr__"}  # fmt: skip


def _fake_class(obj: Any) -> bool:
    return isinstance(obj, type) and obj.__module__.partition(".")[0] not in ("numpy", "builtins")


def _members(cls: type) -> list[str]:
    """The public names and dunders that the fake's classes along ``cls``'s MRO define."""
    names = {n for c in cls.__mro__ if _fake_class(c) for n in vars(c)}
    dunders = {n for n in names if n.startswith("__") and n.endswith("__")} - _PLAIN_DUNDERS
    return sorted(dunders | {n for n in names if not n.startswith("_")})


def fake_paths(modules: dict[str, Any], made: dict[str, Any]) -> list[str]:
    """Every public path of the fake: its modules' names, its classes' members (each class
    under the first path it is found at) and the public attributes of the instances ``made``."""
    paths, seen = [], set()
    for module_name, module in sorted(modules.items()):
        for name in sorted(n for n in dir(module) if not n.startswith("_")):
            obj, path = getattr(module, name), f"{module_name}.{name}"
            paths.append(path)
            if _fake_class(obj) and obj not in seen:
                seen.add(obj)
                attrs = getattr(made.get(path), "__dict__", {})
                paths += [f"{path}.{m}" for m in _members(obj)]
                paths += [f"{path}.{a}" for a in sorted(attrs) if not a.startswith("_")]
    return paths


def _declared_by(obj: Any, folder: Path) -> bool:
    """Whether code in ``folder`` declares ``obj``'s parameters (not ``*args, **kwargs``
    handed to NumPy, nor a NumPy function under ``functools.wraps``)."""
    target = inspect.unwrap(obj.__init__ if isinstance(obj, type) else obj)
    code = getattr(target, "__code__", None)
    if code is None or Path(code.co_filename).parent != folder:
        return False
    signature = inspect.signature(target).parameters.values()
    return not _var_only(_public([[p.name, p.kind.name, False, None] for p in signature]))


def _chain(node: ast.AST) -> str | None:
    """``cupy.a.b`` for an attribute chain on CuPy (``cp``, ``cupy``, ``self.cp``,
    ``cupy_module()``), ``xp.a`` for one on the namespace, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        if isinstance(node.value, ast.Attribute) and node.value.attr == "cp":
            return ".".join(["cupy", *parts])
        node = node.value
    if isinstance(node, ast.Call):
        root = "cupy" if getattr(node.func, "id", "") == "cupy_module" else None
    else:
        root = {"cp": "cupy", "cupy": "cupy", "xp": "xp"}.get(getattr(node, "id", ""))
    return ".".join([root, *parts]) if root and parts else None


def gpumlp_uses() -> tuple[set[str], list[tuple[str, int, list[str], str]]]:
    """gpumlp's CuPy and ``xp`` attribute chains, and its calls of them: (chain, positional
    arguments, keywords, file:line); calls with ``*``/``**`` arguments left out."""
    chains, calls = set(), []
    for file in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Attribute) and (chain := _chain(node)):
                chains.add(chain)
            if not isinstance(node, ast.Call) or (chain := _chain(node.func)) is None:
                continue
            keywords = [k.arg for k in node.keywords]
            if None not in keywords and not any(isinstance(a, ast.Starred) for a in node.args):
                where = f"{file.relative_to(SRC.parent)}:{node.lineno}"
                calls.append((chain, len(node.args), keywords, where))
    return chains, calls


@pytest.fixture(scope="module")
def fake() -> dict[str, Any]:
    """The fake's surface and outcomes, and what gpumlp uses, described in this process."""
    from cuda_emu import fakecupy

    folder = Path(fakecupy.__file__).parent
    with fakecupy.installed() as cp:
        acc = importlib.import_module("array_api_compat.cupy")
        modules = {n: m for n, m in sys.modules.items() if n == "cupy" or n.startswith("cupy.")}
        made = instances(cp)
        described = describe_paths(fake_paths(modules, made), made)
        for path, d in described.items():
            d["own"] = _declared_by(_resolve(path, made)[1], folder)
        chains, calls = gpumlp_uses()
        xp = sorted(c.removeprefix("xp.") for c in chains if c.startswith("xp."))
        return {
            "modules": sorted(modules),
            "paths": described,
            "version": cp.__version__,
            "chains": sorted(c for c in chains if c.startswith("cupy.")),
            "calls": calls,
            "xp": xp,
            "xp_present": {n: hasattr(acc, n) for n in xp},
            "origins": namespace_origins(cp),
            "probes": run_probes(cp),
            "sources": "\n".join(f.read_text() for f in sorted(folder.glob("*.py"))),
        }


@pytest.fixture(scope="module")
def real(fake: dict[str, Any]) -> dict[str, Any]:
    """The real CuPy, described by this file run as a script with it first on sys.path."""
    folder = Path(os.environ[REAL_ENV].strip()).resolve()
    if not (folder / "cupy" / "__init__.py").is_file():
        pytest.fail(f"{REAL_ENV}={folder}: no cupy package there")
    calls = [c[0] for c in fake["calls"] if c[0].startswith("cupy.")]
    paths = sorted({*fake["paths"], *fake["chains"], *calls})
    request = {"modules": fake["modules"], "paths": paths, "xp": fake["xp"]}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(SRC.parent)])}
    proc = subprocess.run(
        [sys.executable, __file__], input=json.dumps(request), env=env, cwd=HERE,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"describing the real CuPy failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    assert Path(result["file"]).resolve().is_relative_to(folder), result["file"]
    return result


# -- the comparisons ------------------------------------------------------------------------------


def _both(fake: dict[str, Any], real: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    return [
        (path, f, real["paths"][path])
        for path, f in fake["paths"].items()
        if real["paths"].get(path) is not None
    ]


def test_the_installed_cupy_is_the_version_the_fake_stands_for(fake, real):
    major = fake["version"].split(".")[0]
    assert real["version"].split(".")[0] == major, f"{REAL_ENV} holds CuPy {real['version']}"


def test_every_public_name_of_the_fake_exists_in_cupy(fake, real):
    missing = [p for p in fake["paths"] if real["paths"][p] is None and p not in FAKE_ONLY]
    assert not missing, f"the fake has what CuPy {real['version']} lacks: {missing}"
    stale = [p for p in FAKE_ONLY if real["paths"].get(p, True) is not None]
    assert not stale, f"FAKE_ONLY names that CuPy has, or the fake lacks: {stale}"


def test_names_are_of_the_same_kind_and_classes_are_the_same(fake, real):
    wrong = []
    for path, f, r in _both(fake, real):
        less = f["kind"] == "routine" and r["kind"] in ("ufunc", "gufunc")
        if f["kind"] != r["kind"] and not less:
            wrong.append(f"{path}: a {f['kind']} in the fake, a {r['kind']} in CuPy")
        elif f["kind"] == "class":
            bases = [[b for b in d["bases"] if b.startswith("builtins.")] for d in (f, r)]
            if f["name"] != r["name"] or bases[0] != bases[1]:
                fake_class, real_class = (
                    f"{d['name']}{b}" for d, b in zip((f, r), bases, strict=True)
                )
                wrong.append(f"{path}: {fake_class} in the fake, {real_class} in CuPy")
        elif f["kind"] == "ufunc" and (f["nin"], f["nout"]) != (r["nin"], r["nout"]):
            wrong.append(f"{path}: nin, nout {f['nin']}, {f['nout']}; CuPy {r['nin']}, {r['nout']}")
        elif None not in (f.get("value"), r.get("value")) and f["value"] != r["value"]:
            wrong.append(f"{path}: {f['value']} in the fake, {r['value']} in CuPy")
    assert not wrong, "\n".join(wrong)


def test_numpy_objects_stay_numpy_objects(fake, real):
    """CuPy hands out NumPy's dtypes, ``finfo`` and constants themselves; so must the fake.
    (Some NumPy functions too, which the fake wraps: that is not compared.)"""
    wrong = [
        f"{path}: NumPy's own {'in the fake' if f['numpy'] else 'in CuPy'} only"
        for path, f, r in _both(fake, real)
        if f["numpy"] != r["numpy"] and (f["numpy"] or r["kind"] != "routine")
    ]
    assert not wrong, "\n".join(wrong)


def test_every_call_the_fake_accepts_binds_in_cupy(fake, real):
    wrong, compared = [], 0
    for path, f, r in _both(fake, real):
        if not f["own"] or f.get("params") is None or r.get("params") is None:
            continue
        compared += 1
        name = path.rpartition(".")[2]
        dunder = name.startswith("__") and name != "__call__"
        problems = incompatible(f["params"], r["params"], dunder)
        if problems and path not in KNOWN_SIGNATURES:
            wrong.append(f"{path}: " + "; ".join(problems))
        elif not problems and path in KNOWN_SIGNATURES:
            wrong.append(f"{path} is in KNOWN_SIGNATURES but matches CuPy")
    assert compared > 50, f"only {compared} signatures compared"
    assert not wrong, "\n".join(wrong)


def test_gpumlp_cupy_calls_bind_in_cupy(fake, real):
    wrong = [f"{c}: missing in CuPy" for c in fake["chains"] if real["paths"].get(c) is None]
    for chain, nargs, keywords, where in fake["calls"]:
        if chain.startswith("cupy.") and real["paths"].get(chain) is not None:
            why = binds(real["paths"][chain].get("params"), nargs, keywords)
            wrong += [f"{where}: {chain}: {why}"] if why else []
    assert not wrong, "\n".join(wrong)


def test_gpumlp_xp_names_resolve_as_with_cupy(fake, real):
    wrong = []
    for name in fake["xp"]:
        present = (fake["xp_present"][name], real["xp"][name] != "missing")
        if not all(present):
            wrong.append(f"xp.{name} in array_api_compat.cupy: with the fake, with CuPy {present}")
        elif fake["origins"].get(name) != real["origins"].get(name):
            origins = fake["origins"].get(name), real["origins"].get(name)
            wrong.append(f"xp.{name} comes from: with the fake, with CuPy {origins}")
    for chain, nargs, keywords, where in fake["calls"]:
        params = real["xp"].get(chain.removeprefix("xp."))
        if chain.startswith("xp.") and params != "missing":
            why = binds(params, nargs, keywords)
            wrong += [f"{where}: {chain}: {why}"] if why else []
    assert not wrong, "\n".join(wrong)


def test_array_api_compat_resolves_names_as_with_cupy(fake, real):
    """array_api_compat.cupy hands out CuPy's function where CuPy has one (vecdot, unstack,
    linalg.vector_norm, ...) and its own otherwise."""
    f, r = fake["origins"], real["origins"]
    extra = sorted(set(f) - set(r))
    assert not extra, f"array_api_compat.cupy has these only with the fake: {extra}"
    differ = [f"{n}: {f[n]} with the fake, {r[n]} with CuPy" for n in sorted(f) if f[n] != r[n]]
    assert not differ, "\n".join(differ)


def test_behaviours_that_need_no_device_match(fake, real):
    """The same results, or the same exception with CuPy's message (the fake may add to it)."""
    wrong = []
    for name, r in real["probes"].items():
        f = fake["probes"][name]
        if r[0] == "raises" and r[1].endswith("CUDARuntimeError"):
            wrong.append(f"{name}: needs a device in CuPy {real['version']} ({r[2]}): drop it")
        elif f[:2] != r[:2] or (r[0] == "raises" and not f[2].startswith(r[2])):
            wrong.append(f"{name}: {f} with the fake, {r} with CuPy")
    assert not wrong, "\n".join(wrong)


def test_cuda_status_names_are_cupys(fake, real):
    """The CUDA statuses the fake raises exist; gpumlp knows CuPy's out-of-memory errors and
    finds the private API it uses for plain-FP32 GEMMs."""
    used = set(re.findall(r"cudaError\w+", fake["sources"]))
    assert used and used <= set(real["cuda_errors"]), sorted(used - set(real["cuda_errors"]))
    assert all(real["gpumlp"].values()), real["gpumlp"]


# -- the real CuPy's side (this file run as a script) ---------------------------------------------


def _describe_real() -> None:
    """Read the request on stdin and describe the real CuPy on stdout."""
    import array_api_compat.cupy as acc
    import cupy
    from cupy_backends.cuda.api.runtime import CUDARuntimeError

    from gpumlp import memory

    request = json.load(sys.stdin)
    for name in request["modules"]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    names = (str(CUDARuntimeError(status)).partition(":")[0] for status in range(1024))
    linalg = importlib.import_module("cupy._core._routines_linalg")
    oom = cupy.cuda.memory.OutOfMemoryError(1024, 2048, 4096)
    result = {
        "file": cupy.__file__,
        "version": cupy.__version__,
        "paths": describe_paths(request["paths"], instances(cupy)),
        "xp": {
            n: _params(getattr(acc, n), n) if hasattr(acc, n) else "missing" for n in request["xp"]
        },
        "origins": namespace_origins(cupy),
        "probes": run_probes(cupy),
        "cuda_errors": sorted({n for n in names if n.startswith("cudaError")}),
        "gpumlp": {
            "is_out_of_memory(OutOfMemoryError)": memory.is_out_of_memory(oom),
            "is_out_of_memory(cudaErrorMemoryAllocation)": memory.is_out_of_memory(
                CUDARuntimeError(2)
            ),
            "_routines_linalg.set_compute_type": hasattr(linalg, "set_compute_type"),
            "_routines_linalg.COMPUTE_TYPE_DEFAULT": hasattr(linalg, "COMPUTE_TYPE_DEFAULT"),
        },
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    _describe_real()

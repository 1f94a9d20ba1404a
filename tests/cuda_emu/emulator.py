"""Compile CUDA C kernel sources unchanged for the CPU, load them, and launch them from Python.

The source is compiled by the host C++ compiler (``$CXX``, default ``g++``, C++20) under
``cuda_emu.h``, which maps CUDA's keywords, thread indices, barriers, warp shuffles and atomics
onto OS threads (its opening comment gives the execution model). For every
``extern "C" __global__ void NAME(PARAMS)`` a launch wrapper with one uniform ABI is generated::

    extern "C" int emu_launch_NAME(const unsigned* grid3, const unsigned* block3, void** args,
                                   char* err, int errlen);

``args`` holds one pointer per parameter to its value, exactly as CUDA's ``void** kernelParams``.
The Python side (:func:`compile_module`, :class:`EmulatedModule`, :class:`EmulatedFunction`) is
shaped like ``cupy.RawModule`` so that the fake CuPy (``fakecupy``) can sit on it, and it checks
every argument against the C parameter types parsed from the source, as the GPU would not.

Compiled libraries are cached under ``tempfile.gettempdir()``, keyed by a SHA-256 of everything
that goes into them, and written under a temporary name first, so concurrent test processes never
see a half-written file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import hashlib
import os
import re
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CompileError", "EmulatedFunction", "EmulatedModule", "EmulationError", "KernelNotFoundError",
    "Param", "compile_module", "have_cxx20", "parse_kernels", "set_timeout",
]  # fmt: skip

HEADER = Path(__file__).with_name("cuda_emu.h")
# nvcc contracts a*b + c to an FMA by default, so GPU results may differ from these by rounding;
# -ffp-contract=off keeps the CPU results reproducible (and x86-64 has no x87 excess precision).
# Hidden visibility and -fno-gnu-unique keep each module's pool and globals its own.
CXXFLAGS = (
    "-std=c++20", "-O2", "-fPIC", "-shared", "-pthread", "-ffp-contract=off",
    "-fvisibility=hidden", "-fno-gnu-unique", "-w",
)  # fmt: skip

_SCALARS = {  # C base type -> NumPy dtype
    "int": "int32", "signed int": "int32", "signed": "int32",
    "unsigned": "uint32", "unsigned int": "uint32",
    "long long": "int64", "long long int": "int64", "signed long long": "int64",
    "unsigned long long": "uint64", "unsigned long long int": "uint64",
    "float": "float32", "double": "float64",
}  # fmt: skip
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict"}
_TYPE_WORDS = {"int", "unsigned", "signed", "long", "short", "char", "float", "double"}
# NVRTC options with no CPU meaning (ignored); -D/-U/-I go to the compiler; others are refused.
_IGNORED_OPTIONS = (
    "--std=", "-std=", "--use_fast_math", "-use_fast_math", "-arch", "--gpu-architecture",
    "--fmad", "-fmad", "-lineinfo", "--generate-line-info", "-G", "--device-debug",
    "--restrict", "-restrict", "--extra-device-vectorization", "-default-device",
)  # fmt: skip
_KERNEL_RE = re.compile(
    r'extern\s+"C"\s+__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+'
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)"
)


class CompileError(RuntimeError):
    """The host compiler refused a kernel source; the message carries its stderr."""


class EmulationError(RuntimeError):
    """A launch was aborted: undefined behaviour caught by the emulator, or a deadlock."""


class KernelNotFoundError(KeyError):
    """``get_function`` of a name the module does not define (names the ones it does)."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Param:
    """One kernel parameter: ``ctype`` as written (normalised), its ``dtype``, pointer or value."""

    name: str
    ctype: str
    dtype: np.dtype
    pointer: bool
    const: bool


def _strip_comments(source: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", " ", source, flags=re.S)


def _typedefs(source: str) -> dict[str, str]:
    """``typedef float real;`` and ``using real = double;`` -> {"real": "float32", ...}."""
    found = {}
    pattern = r"\btypedef\s+([A-Za-z_][\w\s]*?)\s+(\w+)\s*;|\busing\s+(\w+)\s*=\s*([\w\s]+?)\s*;"
    for m in re.finditer(pattern, source):
        base, name = (m[1], m[2]) if m[2] else (m[4], m[3])
        base = " ".join(base.split())
        if base in _SCALARS or base in found:
            found[name] = _SCALARS.get(base) or found[base]
    return found


def parse_kernels(source: str) -> dict[str, tuple[Param, ...]]:
    """The ``extern "C" __global__`` kernels of ``source`` and their parameters, in order.

    Raises ValueError for a parameter type outside int, unsigned, long long, unsigned long long,
    float, double, their typedefs, and pointers to those.
    """
    text = _strip_comments(source)
    aliases = _typedefs(text)
    kernels = {}
    for m in _KERNEL_RE.finditer(text):
        name, params = m[1], m[2].strip()
        parsed = []
        for i, p in enumerate([] if params in ("", "void") else params.split(",")):
            tokens = re.findall(r"\w+|\*", p)
            words = [t for t in tokens if t not in _QUALIFIERS]
            pname = ""
            if words and words[-1] != "*" and words[-1] not in _TYPE_WORDS | aliases.keys():
                pname = words.pop()
            stars = words.count("*")
            base = " ".join(w for w in words if w != "*")
            dtype = _SCALARS.get(base) or aliases.get(base)
            if dtype is None or stars > 1:
                why = f"has a type the emulator does not pass: {sorted(_SCALARS)} or pointers"
                raise ValueError(f"kernel {name}: parameter {i} ({p.strip()!r}) {why}")
            const = "const" in tokens[: tokens.index("*")] if stars else False
            ctype = ("const " if const else "") + base + ("*" if stars else "")
            parsed.append(Param(pname, ctype, np.dtype(dtype), bool(stars), const))
        kernels[name] = tuple(parsed)
    return kernels


@functools.cache
def _compiler() -> tuple[list[str], str]:
    cxx = shlex.split(os.environ.get("CXX", "") or "g++")
    out = subprocess.run([*cxx, "--version"], capture_output=True, text=True, check=True)
    return cxx, out.stdout.strip()


@functools.cache
def have_cxx20() -> tuple[bool, str]:
    """Whether a C++20 compiler with ``<barrier>`` can build emulated kernels here, and why not."""
    try:
        cxx, version = _compiler()
    except (OSError, subprocess.CalledProcessError) as exc:
        return False, f"no C++ compiler ($CXX or g++): {exc}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe.cpp")
        src.write_text("#include <barrier>\n#include <semaphore>\nstd::barrier<> b(1);\n")
        cmd = [*cxx, *CXXFLAGS, "-o", str(Path(tmp, "probe.so")), str(src)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return False, f"{cxx[0]} cannot build C++20 with <barrier>: {done.stderr.strip()[-500:]}"
    return True, version.splitlines()[0]


def _translate_options(options: Sequence[str]) -> list[str]:
    flags = []
    long_forms = {"--define-macro=": "-D", "--undefine-macro=": "-U", "--include-path=": "-I"}
    for opt in options:
        if opt.startswith(_IGNORED_OPTIONS):
            continue
        prefix = next((k for k in long_forms if opt.startswith(k)), None)
        if prefix is not None:
            flags.append(long_forms[prefix] + opt[len(prefix) :])
        elif opt.startswith(("-D", "-U", "-I")):
            flags.append(opt)
        else:
            raise ValueError(f"NVRTC option {opt!r} has no emulator meaning yet (emulator.py)")
    return flags


def _wrappers(kernels: dict[str, tuple[Param, ...]]) -> str:
    out = []
    for name, params in kernels.items():
        unpack = ", ".join(f"*({p.ctype}*)args[{i}]" for i, p in enumerate(params))
        out.append(
            f'extern "C" __attribute__((visibility("default"))) int emu_launch_{name}('
            "const unsigned* grid, const unsigned* block, void** args, char* err, int errlen)\n"
            f'{{ return cuda_emu::launch("{name}", grid, block, err, errlen, '
            f"[=] {{ {name}({unpack}); }}); }}\n"
        )
    out.append('extern "C" __attribute__((visibility("default"))) void emu_set_timeout_ms('
               "long long ms) { cuda_emu::timeout_ms = ms; }\n")  # fmt: skip
    return "".join(out)


def _build(code: str, flags: list[str], kernels: dict) -> Path:
    if re.search(r"\bextern\s+__shared__", _strip_comments(code)):
        raise CompileError("dynamic shared memory (extern __shared__) is not emulated")
    cxx, version = _compiler()
    header = HEADER.read_text(encoding="utf-8")
    unit = f'#include "cuda_emu.h"\n#line 1 "kernel.cu"\n{code}\n#line 1 "emu_wrappers"\n'
    unit += _wrappers(kernels)
    key = hashlib.sha256("\0".join([header, unit, *CXXFLAGS, *flags, version]).encode())
    cache = Path(tempfile.gettempdir(), f"cuda_emu-{os.getuid()}")
    cache.mkdir(mode=0o700, exist_ok=True)
    target = cache / f"{key.hexdigest()[:32]}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        Path(tmp, "cuda_emu.h").write_text(header, encoding="utf-8")
        Path(tmp, "unit.cpp").write_text(unit, encoding="utf-8")
        cmd = [*cxx, *CXXFLAGS, *flags, "-o", "out.so", "unit.cpp"]
        done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise CompileError(f"{shlex.join(cmd)} failed:\n{done.stderr}")
        os.replace(Path(tmp, "out.so"), target)  # atomic: a racing process sees all or nothing
    return target


_lock = threading.Lock()
_modules: dict[tuple[str, tuple[str, ...]], EmulatedModule] = {}
_timeout_ms = 60_000


def set_timeout(seconds: float) -> None:
    """How long a block may run before its launch is declared deadlocked (all modules).

    The threads of such a block are abandoned, not killed: keep this well above the time any
    block takes, or a slow block keeps running while the next launch starts.
    """
    global _timeout_ms
    _timeout_ms = max(1, int(seconds * 1000))
    for mod in list(_modules.values()):
        mod._lib.emu_set_timeout_ms(ctypes.c_longlong(_timeout_ms))


def compile_module(code: str, options: tuple[str, ...] = ()) -> EmulatedModule:
    """Compile (or fetch from the caches) the kernels of ``code``; see the module docstring.

    ``options`` are NVRTC options: ``-D``/``-U``/``-I`` reach the compiler, language-level and
    code-generation options are ignored, anything else raises ValueError.
    """
    key = (code, tuple(options))
    with _lock:
        if key not in _modules:
            _modules[key] = EmulatedModule(code, tuple(options))
        return _modules[key]


class EmulatedModule:
    """A compiled kernel source, as ``cupy.RawModule``: ``get_function(name)``."""

    def __init__(self, code: str, options: tuple[str, ...] = ()) -> None:
        self.code, self.options = code, options
        self.kernels = parse_kernels(code)
        self.path = _build(code, _translate_options(options), self.kernels)
        self._lib = ctypes.CDLL(str(self.path))
        self._lib.emu_set_timeout_ms(ctypes.c_longlong(_timeout_ms))
        self._functions: dict[str, EmulatedFunction] = {}

    def get_function(self, name: str) -> EmulatedFunction:
        if name not in self.kernels:
            has = sorted(self.kernels)
            raise KernelNotFoundError(f"no kernel {name!r} in this module; it has {has}")
        if name not in self._functions:
            self._functions[name] = EmulatedFunction(self, name, self.kernels[name])
        return self._functions[name]


def _dims(what: str, kernel: str, value: Any) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, int | np.integer) else value
    ok = isinstance(dims, tuple | list) and 1 <= len(dims) <= 3
    ok = ok and all(isinstance(d, int | np.integer) and not isinstance(d, bool) for d in dims)
    if not ok or any(int(d) < 1 for d in dims):
        raise ValueError(f"{kernel}: {what} must be 1 to 3 positive ints, got {value!r}")
    d = (*(int(x) for x in dims), 1, 1)[:3]
    if what == "block" and (d[0] * d[1] * d[2] > 1024 or d[2] > 64):
        n = d[0] * d[1] * d[2]
        raise ValueError(f"{kernel}: block {value!r} has {n} threads; a GPU allows 1024 (z 64)")
    if what == "grid" and (d[0] >= 2**31 or d[1] > 65535 or d[2] > 65535):
        raise ValueError(f"{kernel}: grid {value!r} is larger than a GPU allows")
    return d


def _type_name(obj: Any) -> str:
    t = type(obj)
    desc = f"{t.__module__}.{t.__qualname__}"
    return f"{desc} {obj.dtype}" if hasattr(obj, "dtype") else desc


class EmulatedFunction:
    """One kernel: ``fn(grid, block, args, shared_mem=0)`` runs it on the CPU, synchronously.

    ``args`` are device arrays (NumPy arrays, or objects with ``__cuda_emu_array__()`` giving one)
    for pointer parameters and NumPy scalars of exactly the parameter's type for the others.
    """

    def __init__(self, module: EmulatedModule, name: str, params: tuple[Param, ...]) -> None:
        self.module, self.name, self.params = module, name, params
        self.param_types = tuple(p.ctype for p in params)
        self._fn = getattr(module._lib, f"emu_launch_{name}")
        self._fn.restype = ctypes.c_int

    def __repr__(self) -> str:
        return f"<emulated kernel {self.name}({', '.join(self.param_types)})>"

    def _pack(self, args: tuple) -> tuple[list, Any]:
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            want = f"{len(self.params)} parameters ({', '.join(self.param_types)})"
            raise TypeError(f"{self.name}: {len(args)} arguments for {want}")
        keep = []
        for i, (p, arg) in enumerate(zip(self.params, args, strict=True)):
            where = f"{self.name}: argument {i} ({p.ctype} {p.name})"
            if p.pointer:
                buf = arg.__cuda_emu_array__() if hasattr(arg, "__cuda_emu_array__") else arg
                if not isinstance(buf, np.ndarray) or buf.dtype != p.dtype:
                    got = _type_name(arg)
                    raise TypeError(f"{where} needs a {p.dtype} device array, got {got}")
                if not buf.flags.c_contiguous:
                    raise TypeError(f"{where} needs a C-contiguous array, got {buf.strides=}")
                if not p.const and not buf.flags.writeable:
                    raise TypeError(f"{where} is written by the kernel; the array is read-only")
                keep.append(ctypes.c_void_p(buf.ctypes.data))
            else:
                if not isinstance(arg, np.generic) or arg.dtype != p.dtype:
                    got = _type_name(arg)  # a Python number: CuPy would guess its width
                    raise TypeError(f"{where} needs a numpy.{p.dtype} scalar, got {got}")
                keep.append(np.ctypeslib.as_ctypes_type(p.dtype)(arg.item()))
        argv = (ctypes.c_void_p * max(1, len(keep)))(*[ctypes.addressof(k) for k in keep])
        return keep, argv

    def check(self, grid: Any, block: Any, args: tuple, shared_mem: int = 0) -> tuple:
        """Validate a launch without running it (a graph capture does so at record time).

        Returns the packed launch (grid, block, argument values, argv) for :meth:`__call__`.
        """
        g, b = _dims("grid", self.name, grid), _dims("block", self.name, block)
        if shared_mem:
            raise ValueError(
                f"{self.name}: shared_mem={shared_mem}: not emulated (no dynamic smem)"
            )
        return g, b, *self._pack(args)

    def __call__(self, grid: Any, block: Any, args: tuple, shared_mem: int = 0) -> None:
        g, b, keep, argv = self.check(grid, block, args, shared_mem)
        err = ctypes.create_string_buffer(2048)
        rc = self._fn((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b), argv, err, len(err))
        del keep  # the argument values lived until here
        if rc != 0:
            raise EmulationError(err.value.decode(errors="replace"))

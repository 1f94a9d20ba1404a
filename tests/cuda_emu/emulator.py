"""Compile CUDA C kernel sources unchanged for the CPU, load them, and launch them from Python.

A source is compiled by the host C++ compiler (``$CXX``, default ``g++``, C++20) as its own
translation unit under ``cuda_emu.h``, and linked with the runtime ``cuda_emu_rt.cpp``, which
maps CUDA's thread indices, barriers, warp shuffles, shared memory and atomics onto OS threads
(its opening comment gives the execution model and the checks). The only change made to the
source is the rewrite of ``__shared__`` declarations into per-block storage. For every
``extern "C" __global__ void NAME(PARAMS)`` a launch entry with one uniform ABI is generated::

    extern "C" int emu_launch_NAME(const unsigned* grid3, const unsigned* block3, void** args,
                                   const unsigned long long* extents, unsigned long long smem,
                                   char* err, int errlen);

``args`` holds one pointer per parameter to its value, exactly as CUDA's ``void** kernelParams``;
``extents`` the [start, end) bytes of each pointer argument's array, for the checked build.

Two choices make a :class:`Build` (defaults from :func:`configure`, or the environment variables
``CUDA_EMU_SANITIZE=1`` and ``CUDA_EMU_ROUNDING=gpu``):

- ``sanitize``: every load and store of the kernel is checked (memcheck and racecheck, as NVIDIA's
  compute-sanitizer does): out-of-bounds accesses and data races abort the launch, naming the
  kernel, the threads, the argument or shared variable and the offset. Barrier and collective
  misuse (synccheck) is checked in every build.
- ``rounding``: ``"ieee"`` compiles with ``-ffp-contract=off`` (reproducible, no FMA); ``"gpu"``
  rounds as CuPy's NVRTC build does: FMA contraction (``-ffp-contract=fast``, with ``-mfma``
  where the CPU has it; NVRTC's ``-fmad=true`` default) and, for modules taking float32
  arguments, flush-to-zero and denormals-are-zero in every emulated thread (CuPy always passes
  ``-ftz=true``). x86's FTZ/DAZ flags flush double subnormals too, which a GPU does not; the
  float32 kernels use double only for values far from that range. The CPU's libm stands in for
  CUDA's exp/tanh (each a few ulp from the other).

The Python side (:func:`compile_module`, :class:`EmulatedModule`, :class:`EmulatedFunction`) is
shaped like ``cupy.RawModule`` so that the fake CuPy (``fakecupy``) can sit on it, and it checks
every argument against the C parameter types parsed from the source, as the GPU would not.

Compiled libraries are cached under ``tempfile.gettempdir()``, keyed by a SHA-256 of everything
that goes into them (sources, compiler, every flag), and written under a temporary name first,
so concurrent test processes never see a half-written file.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .mutants import mutate

__all__ = [
    "Build", "CompileError", "EmulatedFunction", "EmulatedModule", "EmulationError",
    "KernelNotFoundError", "Param", "compile_module", "configure", "current_build", "have_cxx20",
    "parse_kernels", "rewrite_shared", "set_timeout",
]  # fmt: skip

HEADER = Path(__file__).with_name("cuda_emu.h")
RUNTIME = Path(__file__).with_name("cuda_emu_rt.cpp")
# Hidden visibility and -fno-gnu-unique keep each module's pool and globals its own (x86-64 has
# no x87 excess precision, so without contraction the results are IEEE's).
CXXFLAGS = (
    "-std=c++20", "-O2", "-fPIC", "-pthread", "-fvisibility=hidden", "-fno-gnu-unique", "-w",
)  # fmt: skip
# The checked build: -fsanitize=thread instruments every load and store of the kernels with a
# call the runtime implements; no ThreadSanitizer library is linked (nothing to preload).
SANITIZE_FLAGS = ("-fsanitize=thread", "--param=tsan-instrument-func-entry-exit=0")
ROUNDING = ("ieee", "gpu")
STATIC_SHARED_LIMIT = 48 * 1024  # bytes of __shared__ a kernel may declare (CUDA's limit)
DYNAMIC_SHARED_OPTIN = 227 * 1024  # the most a kernel may opt in to (sm_90: 227 KB per block)

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


def _cpu_has_fma() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return any(line.startswith("flags") and " fma " in f" {line.split(':')[1]} "
                       for line in f)  # fmt: skip
    except OSError:
        return False


@dataclasses.dataclass(frozen=True)
class Build:
    """How kernels are compiled: checked (``sanitize``) and ``rounding`` (``"ieee"``/``"gpu"``)."""

    sanitize: bool = False
    rounding: str = "ieee"

    def __post_init__(self) -> None:
        if self.rounding not in ROUNDING:
            raise ValueError(f"rounding must be one of {ROUNDING}, got {self.rounding!r}")

    def with_(self, sanitize: bool | None, rounding: str | None) -> Build:
        """This build with the settings given (None keeps this one's)."""
        return Build(self.sanitize if sanitize is None else sanitize, rounding or self.rounding)

    def kernel_flags(self) -> list[str]:
        """The compiler flags of the kernels' translation unit for this build."""
        flags = list(SANITIZE_FLAGS) if self.sanitize else []
        if self.rounding == "gpu":
            flags += ["-ffp-contract=fast", *(["-mfma"] if _cpu_has_fma() else [])]
        else:
            flags.append("-ffp-contract=off")
        return flags


def _env_build() -> Build:
    return Build(sanitize=os.environ.get("CUDA_EMU_SANITIZE", "") not in ("", "0"),
                 rounding=os.environ.get("CUDA_EMU_ROUNDING", "") or "ieee")  # fmt: skip


_build_stack: list[Build] = []


def current_build() -> Build:
    """The build :func:`compile_module` uses when not told: the innermost :func:`configure`,
    else the environment's (``CUDA_EMU_SANITIZE``, ``CUDA_EMU_ROUNDING``)."""
    return _build_stack[-1] if _build_stack else _env_build()


@contextlib.contextmanager
def configure(*, sanitize: bool | None = None, rounding: str | None = None) -> Iterator[Build]:
    """``with configure(sanitize=True, rounding="gpu"):`` modules compiled inside use that build
    (settings left out keep the current ones)."""
    build = current_build().with_(sanitize, rounding)
    _build_stack.append(build)
    try:
        yield build
    finally:
        _build_stack.pop()


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
        cmd = [*cxx, *CXXFLAGS, "-shared", "-o", str(Path(tmp, "probe.so")), str(src)]
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


_SHARED_RE = re.compile(
    r"(?P<extern>\bextern\s+)?\b__shared__\s+(?P<type>[A-Za-z_][\w\s:<>,*]*?)\s*\b(?P<name>\w+)"
    r"\s*(?P<dims>(?:\[[^\]]*\]\s*)*);"
)


def rewrite_shared(code: str) -> str:
    """``__shared__ T name[A][B];`` -> a reference to this block's storage of that shape, and
    ``extern __shared__ T name[];`` -> a pointer to the block's dynamic shared memory.

    The one change made to a kernel source before it is compiled: C++ has no storage class
    that is one instance per group of threads. ``__align__(n)`` in the type is kept.
    """
    count = iter(range(1, 1 << 30))

    def one(m: re.Match) -> str:
        typ, name, dims = " ".join(m["type"].split()), m["name"], m["dims"].replace(" ", "")
        if m["extern"]:
            if dims != "[]":
                raise CompileError(f"extern __shared__ {name}{dims}: only `T name[]` is dynamic")
            return f"{typ}* const {name} = static_cast<{typ}*>(::cuda_emu::shared_dynamic());"
        ident = next(count)
        alias = f"cuda_emu_shared_t{ident}"
        return (
            f"using {alias} = {typ}{dims}; {alias}& {name} = *static_cast<{alias}*>("
            f'::cuda_emu::shared_static({ident}, "{name}", sizeof({alias}), alignof({alias})));'
        )

    return _SHARED_RE.sub(one, code)


def _wrappers(kernels: dict[str, tuple[Param, ...]]) -> str:
    out = ["extern \"C\" int emu_launch(const char*, void (*)(void**), void**, const unsigned*, "
           "const unsigned*, const unsigned long long*, const char* const*, int, "
           "unsigned long long, char*, int);\n"]  # fmt: skip
    for name, params in kernels.items():
        unpack = ", ".join(f"*({p.ctype}*)args[{i}]" for i, p in enumerate(params))
        names = ", ".join(f'"{p.ctype} {p.name}"'.replace(' "', '"') for p in params)
        out.append(
            # Reading the argument values is not the kernel's doing: never instrumented. (GCC
            # does not inline an instrumented function into one that is not.)
            f"__attribute__((no_sanitize_thread, noinline)) static void emu_body_{name}("
            f"void** args) {{ {name}({unpack}); }}\n"
            f"static const char* const emu_params_{name}[] = {{{names or 'nullptr'}}};\n"
            f'extern "C" __attribute__((visibility("default"))) int emu_launch_{name}('
            "const unsigned* grid, const unsigned* block, void** args, "
            "const unsigned long long* extents, unsigned long long smem, char* err, int errlen)\n"
            f'{{ return emu_launch("{name}", emu_body_{name}, args, grid, block, extents, '
            f"emu_params_{name}, {len(params)}, smem, err, errlen); }}\n"
        )
    return "".join(out)


def _cache_dir() -> Path:
    cache = Path(tempfile.gettempdir(), f"cuda_emu-{os.getuid()}")
    cache.mkdir(mode=0o700, exist_ok=True)
    return cache


def _compile(cmd: list[str], cwd: str) -> None:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CompileError(f"{shlex.join(cmd)} failed:\n{done.stderr}")


@functools.cache
def _runtime_object() -> Path:
    """The runtime compiled once (per source, compiler and flags) into the cache."""
    cxx, version = _compiler()
    header, runtime = HEADER.read_text(encoding="utf-8"), RUNTIME.read_text(encoding="utf-8")
    flags = [*CXXFLAGS, "-ffp-contract=off"]
    key = hashlib.sha256("\0".join([header, runtime, *flags, *cxx, version]).encode())
    target = _cache_dir() / f"rt-{key.hexdigest()[:32]}.o"
    if not target.exists():
        with tempfile.TemporaryDirectory(dir=_cache_dir()) as tmp:
            Path(tmp, "cuda_emu.h").write_text(header, encoding="utf-8")
            Path(tmp, "cuda_emu_rt.cpp").write_text(runtime, encoding="utf-8")
            _compile([*cxx, *flags, "-c", "-o", "rt.o", "cuda_emu_rt.cpp"], tmp)
            os.replace(Path(tmp, "rt.o"), target)
    return target


def _build(code: str, flags: list[str], kernels: dict, build: Build) -> Path:
    cxx, version = _compiler()
    header = HEADER.read_text(encoding="utf-8")
    runtime = RUNTIME.read_text(encoding="utf-8")
    unit = f'#include "cuda_emu.h"\n#line 1 "kernel.cu"\n{rewrite_shared(mutate(code))}\n'
    unit += '#line 1 "emu_wrappers"\n' + _wrappers(kernels)
    kflags = [*CXXFLAGS, *build.kernel_flags(), *flags]
    key = hashlib.sha256("\0".join([header, runtime, unit, *kflags, *cxx, version]).encode())
    cache = _cache_dir()
    target = cache / f"{key.hexdigest()[:32]}.so"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        Path(tmp, "cuda_emu.h").write_text(header, encoding="utf-8")
        Path(tmp, "unit.cpp").write_text(unit, encoding="utf-8")
        _compile([*cxx, *kflags, "-c", "-o", "unit.o", "unit.cpp"], tmp)
        _compile([*cxx, *CXXFLAGS, "-shared", "-o", "out.so", "unit.o", str(_runtime_object())],
                 tmp)  # fmt: skip
        os.replace(Path(tmp, "out.so"), target)  # atomic: a racing process sees all or nothing
    return target


_lock = threading.Lock()
_modules: dict[tuple[str, tuple[str, ...], Build], EmulatedModule] = {}
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


def compile_module(
    code: str,
    options: tuple[str, ...] = (),
    *,
    sanitize: bool | None = None,
    rounding: str | None = None,
) -> EmulatedModule:
    """Compile (or fetch from the caches) the kernels of ``code``; see the module docstring.

    ``options`` are NVRTC options: ``-D``/``-U``/``-I`` reach the compiler, language-level and
    code-generation options are ignored, anything else raises ValueError. ``sanitize`` and
    ``rounding`` default to :func:`current_build`'s.
    """
    build = current_build().with_(sanitize, rounding)
    key = (code, tuple(options), build)
    with _lock:
        if key not in _modules:
            _modules[key] = EmulatedModule(code, tuple(options), build=build)
        return _modules[key]


class EmulatedModule:
    """A compiled kernel source, as ``cupy.RawModule``: ``get_function(name)``."""

    def __init__(self, code: str, options: tuple[str, ...] = (), *,
                 build: Build | None = None) -> None:  # fmt: skip
        self.code, self.options = code, options
        self.build = build or current_build()
        self.kernels = parse_kernels(code)
        self.path = _build(code, _translate_options(options), self.kernels, self.build)
        self._lib = ctypes.CDLL(str(self.path))
        self._lib.emu_set_timeout_ms(ctypes.c_longlong(_timeout_ms))
        takes_float = any(p.dtype == np.float32 for ps in self.kernels.values() for p in ps)
        self.ftz = self.build.rounding == "gpu" and takes_float
        self._lib.emu_set_ftz(ctypes.c_int(int(self.ftz)))
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
    ``shared_mem`` bytes of dynamic shared memory (``extern __shared__``) may be asked for up to
    48 KB, or up to :attr:`max_dynamic_shared_size_bytes` once that is raised (as CUDA's
    ``cudaFuncAttributeMaxDynamicSharedMemorySize``, at most 227 KB).
    """

    def __init__(self, module: EmulatedModule, name: str, params: tuple[Param, ...]) -> None:
        self.module, self.name, self.params = module, name, params
        self.param_types = tuple(p.ctype for p in params)
        self._fn = getattr(module._lib, f"emu_launch_{name}")
        self._fn.restype = ctypes.c_int
        self._max_dynamic = STATIC_SHARED_LIMIT

    def __repr__(self) -> str:
        return f"<emulated kernel {self.name}({', '.join(self.param_types)})>"

    @property
    def max_dynamic_shared_size_bytes(self) -> int:
        """The dynamic shared memory a launch may ask for (48 KB until raised)."""
        return self._max_dynamic

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, value: int) -> None:
        if not isinstance(value, int | np.integer) or not 0 <= value <= DYNAMIC_SHARED_OPTIN:
            raise ValueError(f"{self.name}: max_dynamic_shared_size_bytes={value!r}: "
                             f"cudaErrorInvalidValue (0 to {DYNAMIC_SHARED_OPTIN})")  # fmt: skip
        self._max_dynamic = int(value)

    def _pack(self, args: tuple) -> tuple[list, Any, Any]:
        if not isinstance(args, tuple):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            want = f"{len(self.params)} parameters ({', '.join(self.param_types)})"
            raise TypeError(f"{self.name}: {len(args)} arguments for {want}")
        keep, extents = [], []
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
                extents += [buf.ctypes.data, buf.ctypes.data + buf.nbytes]
            else:
                if not isinstance(arg, np.generic) or arg.dtype != p.dtype:
                    got = _type_name(arg)  # a Python number: CuPy would guess its width
                    raise TypeError(f"{where} needs a numpy.{p.dtype} scalar, got {got}")
                keep.append(np.ctypeslib.as_ctypes_type(p.dtype)(arg.item()))
                extents += [0, 0]
        argv = (ctypes.c_void_p * max(1, len(keep)))(*[ctypes.addressof(k) for k in keep])
        ext = (ctypes.c_ulonglong * max(2, len(extents)))(*extents)
        return keep, argv, ext

    def check(self, grid: Any, block: Any, args: tuple, shared_mem: int = 0) -> tuple:
        """Validate a launch without running it (a graph capture does so at record time).

        Returns the packed launch (grid, block, shared_mem, argument values, argv, extents)
        for :meth:`__call__`.
        """
        g, b = _dims("grid", self.name, grid), _dims("block", self.name, block)
        if not isinstance(shared_mem, int | np.integer) or shared_mem < 0:
            raise ValueError(f"{self.name}: shared_mem={shared_mem!r}: a byte count >= 0")
        if shared_mem > self._max_dynamic:
            raise ValueError(
                f"{self.name}: shared_mem={shared_mem} bytes of dynamic shared memory: more "
                f"than max_dynamic_shared_size_bytes={self._max_dynamic} (cudaErrorInvalidValue)"
            )
        return g, b, int(shared_mem), *self._pack(args)

    def __call__(self, grid: Any, block: Any, args: tuple, shared_mem: int = 0) -> None:
        g, b, smem, keep, argv, ext = self.check(grid, block, args, shared_mem)
        err = ctypes.create_string_buffer(4096)
        rc = self._fn((ctypes.c_uint * 3)(*g), (ctypes.c_uint * 3)(*b), argv, ext,
                      ctypes.c_ulonglong(smem), err, len(err))  # fmt: skip
        del keep  # the argument values lived until here
        if rc != 0:
            raise EmulationError(err.value.decode(errors="replace"))

"""Building and loading the native engine's library: once per source, compiler and CPU.

The source (:func:`._native_src.native_source`) is compiled by the C++ compiler ``$CXX`` (else
``g++``, else ``c++``) with :data:`FLAGS` into the user cache,
``$XDG_CACHE_HOME/gpumlp/native/`` (``~/.cache`` without it), under a name that hashes the
source, the compiler's path and version, the flags and the CPU (``/proc/cpuinfo``'s model name
and flags: ``-march=native`` makes code for this CPU only). A build writes a temp file in that
folder and renames it into place, so concurrent builders are safe (the last rename wins, with
the same bytes) and a reader never loads half a library. Nothing is built when a library of
that name exists and is whole: beside it, ``<name>.sha256`` holds the SHA-256 of its bytes,
and a library that does not match it (cut short or damaged since, or without it) is built
again rather than loaded (loading a cut-short library is a SIGBUS, not an error).

Flags. ``-O3 -march=native``: vectorized for this core. No ``-ffast-math``: the loop relies on
IEEE arithmetic (NaN and inf reach the epoch's divergence check; sums keep the code's order).
``-fno-math-errno``: ``sqrt`` and ``exp`` need not set ``errno`` (their values are unchanged).
``-ffp-contract=off``: no fused multiply-adds, so each product and sum rounds as NumPy's
element-wise arithmetic does (docs/architecture.md gives the measured cost). Where glibc's
vector math library is found (``libmvec``), ``-fopenmp-simd -DGPUMLP_MVEC -lmvec``: the
activation loops call its vector ``exp`` (within a few ulp of the scalar one, as NumPy's own
SIMD ``exp`` is): an epoch of [784, 800, 10] at batch 100 went from 2.31 to 1.98 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

__all__ = ["FLAGS", "Build", "NativeUnavailable", "build", "cache_dir", "compiler", "numpy_blas"]

_BASE = ("-std=c++20", "-O3", "-march=native", "-fno-math-errno", "-ffp-contract=off",
         "-fPIC", "-shared")  # fmt: skip
_MVEC = ("-fopenmp-simd", "-DGPUMLP_MVEC", "-lmvec") if ctypes.util.find_library("mvec") else ()
FLAGS = _BASE + _MVEC
"""The compiler's flags (see the module docstring); recorded with each run."""


class NativeUnavailable(OSError):
    """No C++ compiler, or the native source did not compile or load (the message says which)."""


class Build:
    """A loaded library and how it was made: ``lib`` (ctypes), ``path``, ``info`` (a JSON-able
    record of the compiler, its version, the flags and the CPU, for the run folder)."""

    def __init__(self, lib: ctypes.CDLL, path: Path, info: dict[str, object]) -> None:
        self.lib, self.path, self.info = lib, path, info


def compiler() -> str | None:
    """The C++ compiler's path, or None when there is none."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and (found := shutil.which(name)):
            return found
    return None


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gpumlp/native`` (``~/.cache/gpumlp/native`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpumlp" / "native"


@functools.cache
def _cpu() -> str:
    """This CPU as ``-march=native`` sees it: /proc/cpuinfo's model name and flags."""
    wanted = ("model name", "flags")
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            seen = {}
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in wanted and key.strip() not in seen:
                    seen[key.strip()] = value.strip()
            return " | ".join(seen.get(k, "") for k in wanted)
    return f"{platform.machine()} {platform.processor()}"


@functools.cache
def _version(cxx: str) -> str:
    try:
        run = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise NativeUnavailable(f"the C++ compiler {cxx!r} does not run: {exc}") from exc
    return (run.stdout.splitlines() or ["unknown"])[0]


_LOADED: dict[Path, Build] = {}


def build(source: str, tag: str) -> Build:
    """The library of ``source``, built into the cache if it is not there, and loaded.

    ``tag`` names it for people (``float32``...). Raises NativeUnavailable without a compiler,
    or when the compile or the load fails (with the compiler's last lines).
    """
    cxx = compiler()
    if cxx is None:
        raise NativeUnavailable("no C++ compiler (set $CXX, or install g++)")
    version = _version(cxx)
    key = hashlib.sha256("\0".join([source, cxx, version, *FLAGS, _cpu()]).encode()).hexdigest()
    folder = cache_dir()
    path = folder / f"gpumlp-native-{tag}-{key[:24]}.so"
    info: dict[str, object] = {"compiler": cxx, "version": version, "flags": list(FLAGS),
                               "cpu": _cpu().split(" | ")[0], "library": path.name}  # fmt: skip
    if path in _LOADED:
        return _LOADED[path]
    if not _whole(path):
        _compile(cxx, source, folder, path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise NativeUnavailable(f"the native library {str(path)!r} did not load: {exc}") from exc
    _LOADED[path] = made = Build(lib, path, info)
    return made


def _compile(cxx: str, source: str, folder: Path, path: Path) -> None:
    """Compile ``source`` into ``path`` through a temp file in ``folder`` and a rename."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NativeUnavailable(f"cannot make the build cache {str(folder)!r}: {exc}") from exc
    with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
        src, out = Path(tmp) / "native.cpp", Path(tmp) / "native.so"
        src.write_text(source, encoding="utf-8")
        try:
            libs = [f for f in FLAGS if f.startswith("-l")]  # after the source, for the linker
            argv = [cxx, *(f for f in FLAGS if f not in libs), "-o", str(out), str(src), *libs]
            run = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NativeUnavailable(f"the C++ compiler {cxx!r} failed to run: {exc}") from exc
        if run.returncode != 0 or not out.is_file():
            tail = "\n".join((run.stderr or run.stdout).strip().splitlines()[-5:])
            said = tail or f"it exited with {run.returncode} and said nothing"
            raise NativeUnavailable(f"the native source did not compile with {cxx}: {said}")
        digest = Path(tmp) / "native.sha256"
        digest.write_text(hashlib.sha256(out.read_bytes()).hexdigest(), encoding="ascii")
        os.replace(out, path)  # atomic: a reader sees no library or the whole one
        os.replace(digest, _digest_path(path))  # until then, a reader builds it again


_LIBRARY_MAX = 256 << 20
"""The largest library :func:`_whole` reads (a built one is ~100 KB)."""


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _whole(path: Path) -> bool:
    """Whether the library at ``path`` is a regular file whose bytes hash to its digest file's
    SHA-256 (False when either is missing, unreadable or does not match)."""
    try:
        want = _digest_path(path).read_text(encoding="ascii").strip()
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > _LIBRARY_MAX:
                return False
            return hashlib.sha256(f.read()).hexdigest() == want
    except (OSError, UnicodeDecodeError):
        return False


_BLAS_NAMES = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")
"""The ILP64 (64-bit integer) CBLAS GEMMs, as NumPy's own OpenBLAS names them and as others do."""


@functools.cache
def numpy_blas(dtype: str) -> tuple[int, str] | None:
    """The address of the ILP64 ``cblas_sgemm`` (float32) or ``cblas_dgemm`` (float64) of the
    BLAS NumPy has loaded, and its library's path and symbol; None where none is found (a BLAS
    with 32-bit integers, or no ``/proc/self/maps``): the engine then uses its own products."""
    letter = "s" if dtype == "float32" else "d"
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = sorted({line.split()[-1] for line in f if "blas" in line.lower()})
    except OSError:
        return None
    for path in paths:
        if not path.startswith("/") or ".so" not in path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (n.format(letter) for n in _BLAS_NAMES):
            fn = getattr(lib, name, None)
            if fn is not None:
                return ctypes.cast(fn, ctypes.c_void_p).value or 0, f"{path}:{name}"
    return None

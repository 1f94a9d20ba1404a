"""pytest fixtures for the CUDA emulation. ``tests/conftest.py`` makes them available with::

    from cuda_emu.fixtures import cxx20, fake_cupy  # noqa: F401

``cxx20`` (session): the compiler probe; skips, with its reason, only where no C++20 compiler
exists (CI machines have g++ 12, so there these tests run). ``fake_cupy``: the fake ``cupy``
installed for one test, gpumlp's CuPy caches cleared around it, its counters reset.
"""

from __future__ import annotations

import importlib
import types
import warnings
from collections.abc import Iterator

import pytest

from . import emulator, fakecupy

__all__ = ["GPUMLP_CACHES", "StaleCacheWarning", "clear_gpumlp_caches", "cxx20", "fake_cupy"]

GPUMLP_CACHES = (
    "gpumlp.backend:cupy_status",
    "gpumlp.backend:_auto_namespace",
    "gpumlp.engines._cupy_fast:_kernels",
)
"""gpumlp's functools caches that remember which CuPy they saw (module:function)."""


class StaleCacheWarning(UserWarning):
    """A cache named in :data:`GPUMLP_CACHES` is gone (renamed?): update the list."""


def clear_gpumlp_caches() -> list[str]:
    """Clear gpumlp's CuPy caches; returns those it could not find instead of failing."""
    missing = []
    for spec in GPUMLP_CACHES:
        module_name, name = spec.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing.append(f"{spec} ({exc})")
            continue
        clear = getattr(getattr(module, name, None), "cache_clear", None)
        if clear is None:
            missing.append(spec)
        else:
            clear()
    return missing


@pytest.fixture(scope="session")
def cxx20() -> str:
    """The C++ compiler's version line; skips the test where none can build the emulator."""
    ok, why = emulator.have_cxx20()
    if not ok:
        pytest.skip(f"CUDA emulation needs a C++20 compiler: {why}")
    return why


@pytest.fixture
def fake_cupy(cxx20: str) -> Iterator[types.ModuleType]:
    """The fake ``cupy`` (``import cupy`` gives it) for one test, counters reset."""
    fake = fakecupy.install()
    try:
        missing = clear_gpumlp_caches()
        if missing:
            warnings.warn(f"fake_cupy: gpumlp caches not found: {missing}", StaleCacheWarning,
                          stacklevel=2)  # fmt: skip
        fake.stats.reset()
        yield fake
    finally:
        fakecupy.uninstall()
        clear_gpumlp_caches()

"""``cupy.cuda.runtime`` of the fake: one device, "CPU emulation", CUDA 13.0."""

from __future__ import annotations

import os
from typing import Any

from ._cuda import RUNTIME_VERSION, CUDARuntimeError, Device, _meminfo
from ._state import guard, stats

__all__ = [
    "CUDARuntimeError", "deviceSynchronize", "driverGetVersion", "getDevice", "getDeviceCount",
    "getDeviceProperties", "is_hip", "memGetInfo", "runtimeGetVersion", "setDevice",
]  # fmt: skip

is_hip = False


def getDeviceCount() -> int:
    return 1


def getDevice() -> int:
    return 0


def setDevice(device: int) -> None:
    Device(device).use()


def getDeviceProperties(device: int) -> dict[str, Any]:
    """As CuPy: str keys, ``name`` as bytes."""
    Device(device).use()
    return {
        "name": b"CPU emulation",
        "totalGlobalMem": _meminfo()[1],
        "multiProcessorCount": os.cpu_count() or 1,
        "major": 9,
        "minor": 0,
        "warpSize": 32,
        "maxThreadsPerBlock": 1024,
        "maxThreadsDim": (1024, 1024, 64),
        "maxGridSize": (2**31 - 1, 65535, 65535),
        "sharedMemPerBlock": 48 * 1024,
    }


def memGetInfo() -> tuple[int, int]:
    """(free, total) bytes of host memory, from /proc/meminfo."""
    return _meminfo()


def runtimeGetVersion() -> int:
    return RUNTIME_VERSION


def driverGetVersion() -> int:
    return RUNTIME_VERSION


def deviceSynchronize() -> None:
    guard("runtime.deviceSynchronize")
    stats.add("sync", "runtime.deviceSynchronize")

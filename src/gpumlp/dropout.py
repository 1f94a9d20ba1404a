"""Dropout masks from a counter-based generator: the same bits on every backend, and no state.

Inverted dropout keeps each hidden unit with probability 1 − p and scales kept units by
1/(1 − p). Whether unit ``(i, j)`` of hidden layer ``l`` is kept at training step ``draw`` is a
pure function of ``(key, draw, l, i·h + j)``: a 32-bit hash (Wellons' ``lowbias32``, bias 0.17,
of a Weyl sequence per (key, draw, layer) stream). So

- every engine computes the same masks: the xp form below, the NumPy fast path (the same xp
  code on NumPy) and the CUDA kernels (:data:`CUDA_SOURCE`, inlined into the forward and
  backward kernels, so a captured CUDA graph draws fresh masks at every replay);
- a run is one generator, advanced by the step counter: the run's ``key`` is drawn once from the
  host RNG and saved in checkpoints, so a resumed run draws exactly the masks an uninterrupted
  one would.

Unit ``(i, j)`` is kept when the top 24 bits of its hash are at least ``threshold(p) =
round(p·2^24)``: the keep probability is ``1 − threshold/2^24``, within 2^-25 of ``1 − p``.
Arithmetic is modulo 2^32: in uint32 where the namespace has it (NumPy, CuPy, JAX,
array_api_strict), else in int64 masked to 32 bits (PyTorch has no uint32 shifts); both give the
same bits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from .backend import Array, Namespace

__all__ = ["CUDA_SOURCE", "MASK", "keep_masks", "stream", "threshold"]

MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2^32 / φ: the Weyl step between consecutive elements
_M1, _M2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers


def _mix(x: int) -> int:
    """lowbias32 on a Python int (the host side of the same hash)."""
    x ^= x >> 16
    x = (x * _M1) & MASK
    x ^= x >> 15
    x = (x * _M2) & MASK
    return x ^ (x >> 16)


def stream(key: int, draw: int, layer: int) -> int:
    """The 32-bit stream of hidden layer ``layer`` at step ``draw`` of the run keyed ``key``."""
    s = _mix(key & MASK)
    s = _mix(s ^ (draw & MASK))
    s = _mix(s ^ ((draw >> 32) & MASK))
    return _mix(s ^ layer)


def threshold(p: float) -> int:
    """Units whose 24-bit hash is below this are dropped (``round(p · 2^24)``)."""
    return round(p * (1 << 24))


@functools.cache
def _constants(name: str, xp: Namespace) -> tuple[Any, bool, dict[str, Any]]:
    """The integer dtype to hash in, whether it needs masking to 32 bits, and the hash's
    constants as arrays of it, made once per namespace (not a copy to the device per step)."""
    try:
        probe = xp.asarray([3], dtype=xp.uint32)
        (probe >> 1) * xp.asarray(_M2, dtype=xp.uint32)
        carrier, masked = xp.uint32, False
    except Exception:  # no uint32 arithmetic (PyTorch): emulate it in int64
        carrier, masked = xp.int64, True
    values = {"m1": _M1, "m2": _M2, "full": MASK, "golden": _GOLDEN, "high": 1 << 16}
    return carrier, masked, {k: xp.asarray(v, dtype=carrier) for k, v in values.items()}


def _hash(x: Array, c: dict[str, Any], masked: bool) -> Array:
    x = x ^ (x >> 16)
    x = (x * c["m1"]) & c["full"] if masked else x * c["m1"]
    x = x ^ (x >> 15)
    x = (x * c["m2"]) & c["full"] if masked else x * c["m2"]
    return x ^ (x >> 16)


def keep_masks(
    key: int,
    draw: int,
    m: int,
    widths: Sequence[int],
    p: float,
    *,
    xp: Namespace,
    dtype: Any,
    first: int = 0,
) -> list[Array]:
    """Inverted-dropout multipliers for one step: for each hidden layer ``l`` an array of shape
    ``(m, widths[l])`` and dtype ``dtype`` holding 0 (dropped) or ``1/(1 − p)`` (kept): rows
    ``first .. first + m − 1`` of the step's masks (a rank's part of a global batch)."""
    carrier, masked, c = _constants(xp.__name__, xp)
    cut, scale = threshold(p), 1.0 / (1.0 - p)
    masks = []
    for layer, h in enumerate(widths):
        s = stream(key, draw, layer)
        # stream + e·golden, the stream added as two 16-bit halves: Python ints that small mix
        # with the carrier's arrays on every namespace, so nothing is copied to the device.
        e = xp.arange(m * h, dtype=carrier)
        if first:  # rows first.. of the step's masks: their elements' indices
            e = e + first * h
        weyl = e * c["golden"] + c["high"] * (s >> 16) + (s & 0xFFFF)
        if masked:
            weyl = weyl & c["full"]
        kept = (_hash(weyl, c, masked) >> 8) >= cut
        masks.append(xp.reshape(xp.astype(kept, dtype) * scale, (m, h)))
    return masks


CUDA_SOURCE = f"""
// Dropout (gpumlp/dropout.py): the same counter-based hash as the xp form, bit for bit.
__device__ __forceinline__ unsigned mix32(unsigned x)
{{
    x ^= x >> 16;
    x *= {_M1:#x}u;
    x ^= x >> 15;
    x *= {_M2:#x}u;
    return x ^ (x >> 16);
}}

__device__ __forceinline__ unsigned dropout_stream(unsigned long long key,
                                                   unsigned long long draw, int layer)
{{
    unsigned s = mix32((unsigned)key);
    s = mix32(s ^ (unsigned)draw);
    s = mix32(s ^ (unsigned)(draw >> 32));
    return mix32(s ^ (unsigned)layer);
}}

// True when element e (row-major index i*h + j) of the layer's stream is kept.
__device__ __forceinline__ bool dropout_keep(unsigned stream, long long e, unsigned cut)
{{
    return (mix32(stream + (unsigned)e * {_GOLDEN:#x}u) >> 8) >= cut;
}}
"""
"""CUDA C of the same hash, for the kernel source (:mod:`gpumlp.engines._kernels`)."""

"""Initial weights, drawn on the host by one NumPy generator, so every backend starts equal.

Weights are drawn in float64 (the numbers a seed has always meant) a block of rows at a time
and cast into the network's dtype as they go, so a large layer never needs a float64 copy of
itself: the peak is the parameters in their own dtype plus one block.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .backend import Namespace, to_device
from .network import Params

__all__ = ["BLOCK_VALUES", "INITS", "init_params"]

INITS = ("normal", "scaled", "he")
BLOCK_VALUES = 1 << 20
"""Values drawn per block (8 MiB of float64)."""

_SCALE: dict[str, Callable[[int], float]] = {
    "normal": lambda n: 1.0,
    "scaled": lambda n: n**-0.5,
    "he": lambda n: (2.0 / n) ** 0.5,
}


def _draw(rng: np.random.Generator, shape: tuple[int, int], scale: float, dtype: Any) -> Any:
    """``rng.standard_normal(shape) * scale`` cast to ``dtype``, drawn in row blocks: the
    generator fills in C order, so the blocks are exactly the values of one big draw."""
    out = np.empty(shape, dtype=dtype)
    rows = max(1, BLOCK_VALUES // max(1, shape[1]))
    for r in range(0, shape[0], rows):
        block = rng.standard_normal((min(rows, shape[0] - r), shape[1]))
        out[r : r + block.shape[0]] = block * scale if scale != 1.0 else block
    return out


def init_params(
    sizes: Sequence[int], init: str, rng: np.random.Generator, *, dtype: str, xp: Namespace
) -> Params:
    """Draw initial parameters on the host and move them to ``xp`` in ``dtype``.

    Parameters
    ----------
    sizes : sequence of int, length L + 1
    init : {"normal", "scaled", "he"}
        ``normal``: weights and biases N(0, 1) (the book's network.py); ``scaled``: weights
        N(0, 1/n_in), biases N(0, 1) (network2.py); ``he``: weights N(0, 2/n_in), biases 0
        (He et al. 2015, for ReLU).
    rng : numpy.random.Generator, the only source of randomness
    dtype : {"float32", "float64"}
    xp : namespace of the arrays returned

    Returns
    -------
    Params with ``weights[l]`` (sizes[l+1], sizes[l]) and ``biases[l]`` (sizes[l+1],).
    """
    if init not in INITS:
        raise ValueError(f"init={init!r} is not an initialisation; expected one of {list(INITS)}")
    pairs = list(itertools.pairwise(sizes))
    # Biases first, then weights, in the book's order of drawing ("he" draws and zeroes them,
    # so the weights are the same numbers whichever init).
    bias_scale = 0.0 if init == "he" else 1.0
    biases = [_draw(rng, (1, n_out), bias_scale, dtype)[0] for _, n_out in pairs]
    weights = [_draw(rng, (n_out, n_in), _SCALE[init](n_in), dtype) for n_in, n_out in pairs]
    return Params([to_device(w, xp) for w in weights], [to_device(b, xp) for b in biases])

"""The array work of :mod:`gpumlp.data.images`: find the ink on the paper, drop specks, and place
the digit in an MNIST field. NumPy, and Pillow passed in as ``Image``; shapes (h, w) float32.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["BOX", "NoDigit", "box_extent", "find_ink", "keep_digit", "place"]

BOX = 20 / 28  # the digit's longer side, as a share of the field (LeCun's 20 in 28)
_FIT_SIDE = 64  # about as many cells a side on which the paper's brightness is fitted
_NOISE_SIGMAS = 4.0  # ink stands this many noise deviations off the paper
_MIN_CONTRAST = 0.04  # weaker ink (of the 0..1 range, ~10 grey levels) is a blank picture
_BBOX_LEVEL = 0.25  # ink at least this strong (of the strongest) bounds the digit
_LABEL_SIDE = 128  # at most as many cells a side on which connected pieces of ink are found
_SPECK_SHARE = 0.05  # a piece with less ink than this share of the largest is a speck
_MIN_EXTENT = 0.02  # a digit spans this share of the picture's longer side (and 2 px) or more


class NoDigit(ValueError):
    def __init__(self, why: str) -> None:
        super().__init__(f"no digit found: {why}")
        self.why = why


def find_ink(p: np.ndarray) -> np.ndarray:
    """Ink (h, w) float32 in [0, 1] in the picture ``p`` (h, w): paper and noise 0."""
    h, w = p.shape
    # The paper's surface, fitted to block means (noise averages out). The outer ring is
    # mostly paper even where a digit fills the frame: a plane through its better half (least
    # trimmed squares, Rousseeuw's C-steps), then a quadratic through the cells near it.
    fy, fx = max(1, h // _FIT_SIDE), max(1, w // _FIT_SIDE)
    grid = p[: h // fy * fy, : w // fx * fx].reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))
    gy, gx = np.mgrid[0 : grid.shape[0], 0 : grid.shape[1]]
    terms = np.stack(_quadratic((gy + 0.5) * fy / h - 0.5, (gx + 0.5) * fx / w - 0.5), axis=-1)
    ring = np.ones(grid.shape, bool)
    e = max(1, min(grid.shape) // 32)
    ring[e:-e, e:-e] = False
    resid = grid - np.median(grid[ring])
    for step in range(7):
        spread = np.median(np.abs(resid[ring]))
        if step < 4:
            keep, n = ring & (np.abs(resid) <= spread), 3
        else:
            keep, n = np.abs(resid) <= 3 * (1.4826 * spread + 0.5 / 255), 6
        coef = np.linalg.lstsq(terms[keep][:, :n], grid[keep], rcond=None)[0]
        resid = grid - terms[..., :n] @ coef
    ny, nx = np.ogrid[0:h, 0:w]
    pixel_terms = _quadratic((ny + 0.5) / h - 0.5, (nx + 0.5) / w - 0.5)
    r = p - sum(c * t for c, t in zip(coef, pixel_terms, strict=True))
    # The noise: the median absolute deviation on the border (mostly paper), or from
    # neighbours' differences (only the ink's edges differ by more than noise) where smaller,
    # as where a digit fills the frame.
    b = max(1, min(h, w) // 32)
    border = np.concatenate([r[:b].ravel(), r[-b:].ravel(), r[:, :b].ravel(), r[:, -b:].ravel()])
    d = np.concatenate([np.diff(r, axis=0).ravel(), np.diff(r, axis=1).ravel()]) / math.sqrt(2)
    spreads = [np.median(np.abs(v)) for v in (border, d) if v.size]  # a 1x1 picture has no d
    noise = max(1.4826 * float(min(spreads)), 0.5 / 255)
    floor = _NOISE_SIGMAS * noise
    light, dark = np.maximum(r - floor, 0).sum(), np.maximum(-r - floor, 0).sum()
    q = r if light >= dark else -r
    strong = q[q > floor]
    peak = float(np.percentile(strong, 98)) if strong.size else 0.0
    if peak < max(_MIN_CONTRAST, 1.5 * floor):
        raise NoDigit(f"it is blank (the strongest ink differs from the paper by "
                       f"{max(peak, 0):.3f}, the paper's noise is {noise:.3f})")  # fmt: skip
    return np.asarray(np.clip((q - floor) / (peak - floor), 0, 1), dtype=np.float32)


def _quadratic(y: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """The terms 1, y, x, y², yx, x² of coordinates ``y``, ``x`` (both (h, w), or ogrid's
    (h, 1) and (1, w), which keeps a full-size surface from needing an (h, w, 6) array)."""
    return [np.ones_like(y), y, x, y * y, y * x, x * x]


def keep_digit(ink: np.ndarray) -> np.ndarray:
    """``ink`` (h, w) without specks: pieces of ink much smaller than the largest, found on a
    grid of cells (a cell is on when it holds ink _BBOX_LEVEL strong)."""
    h, w = ink.shape
    f = max(1, math.ceil(max(h, w) / _LABEL_SIDE))
    padded = np.pad(ink, ((0, -h % f), (0, -w % f)))
    cells = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f)
    labels = _label(cells.max(axis=(1, 3)) >= _BBOX_LEVEL)
    total = np.bincount(labels.ravel(), weights=cells.sum(axis=(1, 3)).ravel())
    total[0] = 0
    keep = total >= _SPECK_SHARE * total.max()
    keep[0] = False
    near = _spread(keep[labels], False, np.max)  # a stroke's faint edge may reach the next cell
    return np.asarray(ink * np.repeat(np.repeat(near, f, 0), f, 1)[:h, :w])


def _spread(a: np.ndarray, fill: Any, reduce: Any) -> np.ndarray:
    """``reduce`` (np.min or np.max) of each element of ``a`` (h, w) and its 8 neighbours."""
    h, w = a.shape
    pad = np.pad(a, 1, constant_values=fill)
    return np.asarray(
        reduce([pad[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
    )


def _label(mask: np.ndarray) -> np.ndarray:
    """8-connected pieces of ``mask`` (h, w): int (h, w), 0 off the mask, pieces 1, 2, ...

    Each pass gives every pixel its neighbours' smallest label, then jumps pointers (a label is
    the flat index of a pixel of the same piece), so a piece needs few passes."""
    h, w = mask.shape
    off = h * w
    labels = np.where(mask, np.arange(off).reshape(h, w), off)
    while True:
        low = np.where(mask, _spread(labels, off, np.min), off)
        flat = np.append(low.ravel(), off)
        low = flat[flat[low]]
        if np.array_equal(low, labels):
            return np.where(mask, np.unique(labels, return_inverse=True)[1].reshape(h, w) + 1, 0)
        labels = low


def box_extent(ink: np.ndarray) -> int:
    """The longer side of the box of ``ink`` (h, w) at least _BBOX_LEVEL strong, in pixels."""
    rows = np.flatnonzero((ink >= _BBOX_LEVEL).any(axis=1))
    cols = np.flatnonzero((ink >= _BBOX_LEVEL).any(axis=0))
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)


def place(Image: Any, ink: np.ndarray, side: int) -> np.ndarray:
    """``ink`` (h, w) scaled so its box's longer side is round(side * 20 / 28), resampled into
    (side * side,) with its centre of mass at side / 2 (pixel-centre coordinates)."""
    h, w = ink.shape
    extent = box_extent(ink)
    if extent < max(2, _MIN_EXTENT * max(h, w)):
        raise NoDigit(f"only a speck of ink, {extent} pixels across")
    s = round(side * BOX) / extent  # field pixels per picture pixel
    com = np.array([ink.sum(axis=1) @ np.arange(h), ink.sum(axis=0) @ np.arange(w)]) / ink.sum()
    # The picture that the field and Lanczos' support (3 / s) reach, zero beyond its edges:
    # Pillow resamples only boxes inside the image.
    reach = (side / 2 + 5) / s + 2
    lo, hi = np.floor(com - reach).astype(int), np.ceil(com + reach).astype(int)
    canvas = np.zeros(tuple(hi - lo), np.float32)
    (ya, xa), (yb, xb) = np.maximum(lo, 0), np.minimum(hi, (h, w))
    canvas[ya - lo[0] : yb - lo[0], xa - lo[1] : xb - lo[1]] = ink[ya:yb, xa:xb]
    img = Image.fromarray(canvas)
    out = np.zeros((side, side), np.float32)
    for _ in range(2):  # the second pass undoes the drift from clipping Lanczos' ringing
        # Field pixel i spans [i, i + 1] (edge coordinates); its point side / 2 + 1/2 is com.
        y0, x0 = com - lo + 0.5 - (side / 2 + 0.5) / s
        box = (x0, y0, x0 + side / s, y0 + side / s)
        out = np.clip(np.asarray(img.resize((side, side), Image.Resampling.LANCZOS, box=box)),
                      0, 1)  # fmt: skip
        at = np.array([out.sum(axis=1) @ np.arange(side), out.sum(axis=0) @ np.arange(side)])
        com = com + np.clip(at / max(out.sum(), 1e-6) - side / 2, -1, 1) / s
    return np.asarray(out / max(out.max(), 1e-6), dtype=np.float32).ravel()

"""Pictures of handwritten digits made to look like MNIST digits, for ``gpumlp predict``.

MNIST digits were made so (LeCun et al.): the black-and-white digit was scaled, keeping its
aspect ratio, to fit a 20×20 box (anti-aliasing made the grey levels), then placed in a 28×28
field with its centre of mass at the centre: light ink (1.0) on black (0.0). In the test set
every digit's ink spans 20 pixels on its longer side, and its centre of mass lies in
[13.5, 14.5] on both axes, mean 14.0 (pixel-centre coordinates): an integer shift put it
nearest pixel 14. :func:`to_mnist` repeats the recipe on any grey picture, shifting to
``side / 2`` by a sub-pixel amount; :func:`read_digit` reads the picture from a file first.
Pillow (``gpumlp[image]``) is imported inside the functions: this module imports without it.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..files.safeio import Oversize, open_regular, require_memory
from ._digitprep import BOX, NoDigit, box_extent, find_ink, keep_digit, place

__all__ = ["IMAGE_SUFFIXES", "MAX_PIXELS", "find_images", "read_digit", "to_mnist"]

MAX_PIXELS = 40_000_000
"""The most pixels an image may declare: 40 MP decode to 160 MB as RGBA. Pillow's own limits
(a warning at ~89 MP, an error at ~179 MP) are far beyond what a digit needs."""

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .jpe .jfif .bmp .dib .gif .tif .tiff .webp .pbm .pgm .ppm .pnm .tga".split()
)
"""File extensions (lower case) that :func:`find_images` takes from a folder."""

_WORK_SIDE = 1024  # the picture is reduced to this first: a digit 1/20 of it still has 50 px
# Peak bytes per pixel of reading a picture (measured at 40 MP: 3.6 grey, 9.5 16-bit grey,
# 15.3 16-bit RGBA, which Pillow decodes, converts and composites on white).
_PEAK_PER_PIXEL = {"1": 4, "L": 4}


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install 'gpumlp[image]'") from None
    return Image


def _check_side(side: int) -> None:
    if isinstance(side, bool) or not isinstance(side, int) or side < 4:
        raise ValueError(f"side must be an int of at least 4, not {side!r}")


def find_images(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The image files named: files as given (any extension), and each folder's files with an
    extension in :data:`IMAGE_SUFFIXES` (sorted by name, not recursive, hidden ones left out).

    Returns
    -------
    list of Path, in the order named.

    Raises
    ------
    FileNotFoundError
        If a path does not exist (the message names it).
    ValueError
        If there are no paths, or a folder holds no images (the message names it).
    """
    if isinstance(paths, (str, os.PathLike)):  # one path would otherwise be read letter by letter
        paths = [paths]
    if not paths:
        raise ValueError("no image paths given")
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                             and not f.name.startswith(".") and f.is_file()),
                            key=lambda f: f.name)  # fmt: skip
            if not inside:
                kinds = ", ".join(sorted(IMAGE_SUFFIXES))
                raise ValueError(f"folder '{p}' holds no image files ({kinds})")
            found += inside
        elif p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"image '{p}' does not exist")
    return found


def read_digit(path: str | os.PathLike[str], *, side: int = 28) -> np.ndarray:
    """The picture at ``path`` as an MNIST digit (see :func:`to_mnist`).

    Parameters
    ----------
    path : str or path-like
        Any image Pillow reads (its first frame), grey or colour, turned upright by its EXIF
        orientation, transparent parts taken as white paper; up to :data:`MAX_PIXELS`.
    side : int, default 28
        The side of the square field (28 for MNIST networks).

    Returns
    -------
    x : ndarray, shape (side * side,), float32, values in [0, 1]
        Light ink on black, row by row, as in MNIST.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is a folder, not a regular file (a FIFO, a device: refused without reading),
        unreadable, over :data:`MAX_PIXELS`, or shows no digit (naming it).
    ImportError
        If Pillow is not installed.
    """
    Image = _pillow()
    _check_side(side)
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"image '{p}' is a directory")
    if not p.exists():
        raise FileNotFoundError(f"image '{p}' does not exist")
    f = open_regular(p, "image")  # a FIFO or device is refused at once, never waited on
    try:
        with f, warnings.catch_warnings():
            # Pillow warns from ~89 MP; we refuse from MAX_PIXELS, naming the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f) as img:  # reads the header only
                w, h = img.size
                if w * h <= MAX_PIXELS:
                    need = _PEAK_PER_PIXEL.get(img.mode, 16) * w * h
                    require_memory(need, f"image '{p}' ({w}x{h} pixels, {img.mode})")
                pixels = None if w * h > MAX_PIXELS else _grey(Image, img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow names the count, not the size
        if found and int(found[1]) > MAX_PIXELS:
            raise _too_big(p, f"{int(found[1]) / 1e6:,.0f} megapixels") from None
        raise ValueError(f"image '{p}' is too large for Pillow: {exc}") from None
    except Oversize as exc:
        raise ValueError(str(exc)) from None
    except MemoryError:
        raise ValueError(f"image '{p}' needs more memory to read than is free") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:  # Pillow's failures
        raise ValueError(f"image '{p}' cannot be read: {exc}") from None
    if pixels is None:
        raise _too_big(p, f"{w}x{h} pixels")
    try:
        return to_mnist(pixels, side=side)
    except NoDigit as exc:
        raise ValueError(f"no digit found in image '{p}': {exc.why}") from None


def _too_big(p: Path, size: str) -> ValueError:
    return ValueError(f"image '{p}' is {size}, more than the {MAX_PIXELS / 1e6:g} megapixels "
                      "gpumlp reads; scale it down first")  # fmt: skip


def _grey(Image: Any, img: Any) -> np.ndarray:
    """``img``'s first frame, upright and grey: (h, w) float32 in [0, 1], _WORK_SIDE at most.
    Large images stay 8-bit until reduced: 40 MP as float32 would take 160 MB."""
    turn = img.getexif().get(0x0112, 1)  # EXIF orientation: how the camera was held
    img.draft("L", (_WORK_SIDE, _WORK_SIDE))  # JPEG decodes at 1/2..1/8 scale: less to decode
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # convert("L") clips at 255
        scale = 1.0 if img.mode == "F" else 65535.0
        img = Image.fromarray(np.clip(np.asarray(img, np.float32) / scale, 0, 1))
    else:
        if img.has_transparency_data:  # ink on a transparent canvas: put it on white paper
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
        img = img.convert("L")
    img = _shrink(Image, img, max(img.size) / _WORK_SIDE)
    T = Image.Transpose
    undo = {2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
            6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90}.get(turn)  # fmt: skip
    img = img if undo is None else img.transpose(undo)
    return np.asarray(img, np.float32) / (1.0 if img.mode == "F" else 255.0)


def to_mnist(pixels: np.ndarray, *, side: int = 28) -> np.ndarray:
    """A grey picture of a digit as an MNIST digit: light ink on black, scaled and centred.

    1. Reduce the picture to 1024 pixels a side at most (a box filter).
    2. Fit the paper's brightness, a quadratic surface (uneven light), to the outer ring, then
       to all but the ink (a robust fit). Measure the noise.
    3. The ink is whichever side of the paper holds more beyond 4 noise deviations (so either
       polarity); make it positive: paper and noise 0, the strongest ink 1 (the 98th
       percentile of what stands out), so faint pencil comes out clear.
    4. Drop pieces of ink holding under 5% of the largest piece's ink (dust, noise): they move
       neither the box nor the centre of mass.
    5. Reduce the picture to 1.5 times the digit's final size and redo 2-4: less noise.
    6. Scale the box of the ink 1/4 as strong as the strongest or more, keeping the aspect
       ratio, to ``round(side * 20 / 28)`` pixels on its longer side (Lanczos), shifted by a
       sub-pixel amount that puts the centre of mass at ``side / 2`` on both axes (MNIST's
       mean, pixel-centre coordinates). Clip to [0, 1]; make the strongest pixel 1.

    Parameters
    ----------
    pixels : array, shape (h, w), float, values in [0, 1]
        Grey levels, 0 black; either polarity, any size.
    side : int, default 28
        The side of the square field.

    Returns
    -------
    x : ndarray, shape (side * side,), float32, values in [0, 1]

    Raises
    ------
    ValueError
        If ``pixels`` is not a 2-D array of finite values in [0, 1], ``side`` is below 4, or no
        digit is found: a blank picture (no ink 0.04 and 4 noise deviations off the paper), or
        only a speck (under 2% of the picture's longer side, or 2 pixels).
    ImportError
        If Pillow is not installed.
    """
    Image = _pillow()
    _check_side(side)
    p = np.asarray(pixels, dtype=np.float32)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"pixels must be a 2-D grey picture (h, w), not shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("pixels must be grey levels in [0, 1], not NaN or infinite")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"pixels must be grey levels in [0, 1], not {p.min():g}..{p.max():g}")
    img = _shrink(Image, Image.fromarray(p), max(p.shape) / _WORK_SIDE)
    ink = keep_digit(find_ink(np.asarray(img)))
    by = box_extent(ink) / (1.5 * round(side * BOX))
    if by >= 1.2:
        ink = keep_digit(find_ink(np.asarray(_shrink(Image, img, by))))
    return place(Image, ink, side)


def _shrink(Image: Any, img: Any, by: float) -> Any:
    """The Pillow image ``img`` made ``by`` times smaller (a box filter), if ``by`` > 1."""
    size = (max(1, round(img.width / by)), max(1, round(img.height / by)))
    return img if by <= 1 else img.resize(size, Image.Resampling.BOX)

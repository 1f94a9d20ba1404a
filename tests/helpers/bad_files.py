"""Bad files and the check on a refusal: MNIST files ``load_mnist`` refuses (each tried
through ``load_mnist`` and through ``gpumlp train``), checkpoints ``gpumlp.load`` refuses (and
``gpumlp predict``), an image that declares too many pixels; ``raises_exactly``."""

from __future__ import annotations

import contextlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp.files import checkpoint
from gpumlp.files.checkpoint import CheckpointError, read_checkpoint, write_checkpoint


def mnist_arrays(n_train=60, n_test=12, **override):
    """MNIST-shaped arrays (random images, labels cycling 0..9); ``override`` replaces arrays
    (None leaves one out)."""
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test) % 10,
    }
    return {k: v for k, v in (arrays | override).items() if v is not None}


def npz_maker(**override):
    """A maker ``write(folder) -> folder / "mnist.npz"`` of a plain (stored) npz of
    ``mnist_arrays(**override)``."""

    def write(path: Path) -> Path:
        path = path / "mnist.npz"
        np.savez(path, **mnist_arrays(**override))
        return path

    return write


def _raw(content: bytes, name: str = "mnist.npz"):
    def write(path: Path) -> Path:
        (path / name).write_bytes(content)
        return path / name

    return write


def _truncated_npz(path: Path) -> Path:
    full = npz_maker()(path).read_bytes()
    (path / "mnist.npz").write_bytes(full[: len(full) // 2])
    return path / "mnist.npz"


def _empty_folder(path: Path) -> Path:
    (path / "idx").mkdir()
    return path / "idx"


BAD_DATA_FILES = [
    ("missing", lambda p: p / "nope.npz", FileNotFoundError, "does not exist"),
    ("empty", _raw(b""), ValueError, "is empty"),
    ("text", _raw(b"hello, world\n" * 10), ValueError, "no known format"),
    ("truncated-npz", _truncated_npz, ValueError, "not a valid MNIST npz"),
    ("truncated-gzip", _raw(b"\x1f\x8b\x08\x00\x00", "m.pkl.gz"), ValueError, "not a valid"),
    ("folder-without-idx", _empty_folder, ValueError, "has no train-images-idx3-ubyte"),
    ("npz-missing-key", npz_maker(y_test=None), ValueError, "missing array.*y_test"),
    ("npz-label-10", npz_maker(y_train=np.arange(60) % 11), ValueError, r"labels must be 0\.\.9"),
    (
        "npz-label-negative",
        npz_maker(y_test=np.arange(12) - 1),
        ValueError,
        r"labels must be 0\.\.9",
    ),
    ("npz-float-images", npz_maker(x_test=np.zeros((12, 28, 28))), ValueError, "must be uint8"),
    ("npz-27-pixels", npz_maker(x_train=np.zeros((60, 28, 27), np.uint8)), ValueError, "28, 28"),
    ("npz-count", npz_maker(y_train=np.arange(59) % 10), ValueError, "60 train images but 59"),
    ("npz-too-few", npz_maker(n_train=5, y_train=np.arange(5)), ValueError, "too few"),
    ("single-idx-file", _raw(b"\x00\x00\x08\x03" + b"\0" * 12, "x.idx"), ValueError, "single IDX"),
]
"""(id, make(folder) -> path, exception type, message pattern): data files ``load_mnist``
refuses, naming the file."""


def resigned(source: Path, target: Path, change_meta=None, change_arrays=None) -> Path:
    """``source``'s checkpoint written again as ``target``, signed by ``write_checkpoint``, its
    metadata (without the signature) and arrays replaced by what ``change_meta(meta)`` and
    ``change_arrays(arrays)`` return: a valid container holding what a test makes of it."""
    meta, arrays = read_checkpoint(source)
    meta = {k: v for k, v in meta.items() if k not in ("format", "sha256")}
    if change_meta:
        meta = change_meta(meta)
    if change_arrays:
        arrays = change_arrays(arrays)
    write_checkpoint(target, meta, arrays)
    return target


def _rewritten(change_meta=None, change_arrays=None):
    """A checkpoint re-signed by ``write_checkpoint`` after changing its metadata or arrays."""

    def write(path: Path, model: Path) -> Path:
        return resigned(model, path / "ckpt.npz", change_meta, change_arrays)

    return write


def _damaged(edit):
    def write(path: Path, model: Path) -> Path:
        (path / "ckpt.npz").write_bytes(edit(model.read_bytes()))
        return path / "ckpt.npz"

    return write


def _future_format(path: Path, model: Path) -> Path:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(checkpoint, "FORMAT_VERSION", checkpoint.FORMAT_VERSION + 1)
        gpumlp.load(model, backend="numpy").save(path / "ckpt.npz")
    return path / "ckpt.npz"


def _plain_npz(path: Path, model: Path) -> Path:
    np.savez(path / "ckpt.npz", w=np.ones(3))
    return path / "ckpt.npz"


def _npy_file(path: Path, model: Path) -> Path:
    with open(path / "ckpt.npz", "wb") as f:
        np.save(f, np.ones(3))
    return path / "ckpt.npz"


def _flip_middle(data: bytes) -> bytes:
    i = len(data) // 2  # inside param/... data: the zip CRC or the sha256 catches it
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1 :]


def _without(key):
    return lambda d: {k: v for k, v in d.items() if k != key}


BAD_CHECKPOINT_CONTAINERS = [
    ("missing", lambda p, m: p / "nope.npz", FileNotFoundError, "does not exist"),
    ("directory", lambda p, m: p, CheckpointError, "is a directory"),
    ("empty", _damaged(lambda b: b""), CheckpointError, "damaged or not a gpumlp checkpoint"),
    ("truncated", _damaged(lambda b: b[: len(b) // 2]), CheckpointError, "damaged"),
    ("text", _damaged(lambda b: b"not a zip\n" * 50), CheckpointError, "damaged"),
    ("flipped-byte", _damaged(_flip_middle), CheckpointError, "damaged|corrupted"),
    ("plain-npz", _plain_npz, CheckpointError, "not a gpumlp checkpoint"),
    ("npy", _npy_file, CheckpointError, "not a gpumlp checkpoint"),
    ("future-format", _future_format, CheckpointError, r"format 2; .*upgrade gpumlp"),
]
"""(id, make(folder, model_file) -> path, exception type, message pattern): files that are no
readable checkpoint container (:mod:`gpumlp.files.checkpoint`)."""


BAD_CHECKPOINT_CONTENTS = [
    ("no-sizes", _rewritten(_without("sizes")), CheckpointError, "lacks model metadata 'sizes'"),
    (
        "bad-sizes",
        _rewritten(lambda m: m | {"sizes": [4, 0, 3]}),
        CheckpointError,
        r"invalid model configuration: sizes\[1\]",
    ),
    (
        "unknown-cost",
        _rewritten(lambda m: m | {"cost": "hinge"}),
        CheckpointError,
        "invalid model configuration: cost='hinge'",
    ),
    ("no-param", _rewritten(None, _without("param/3")), CheckpointError, "lacks parameter"),
    (
        "param-shape",
        _rewritten(None, lambda a: a | {"param/0": np.ones((4, 5))}),
        CheckpointError,
        r"invalid parameters: array 'param/0' has shape \(4, 5\), expected \(5, 4\)",
    ),
    (
        "param-nan",
        _rewritten(None, lambda a: a | {"param/1": np.full(5, np.nan)}),
        CheckpointError,
        r"invalid parameters: biases\[0\] contains NaN",
    ),
]
"""The same for valid, signed containers whose model is wrong (:mod:`gpumlp.files.modelfile`)."""


@contextlib.contextmanager
def raises_exactly(exc: type[BaseException], match: str | None, *, naming: object = None):
    """Expect ``exc`` itself (not a subclass) whose message matches ``match`` (None: any) and,
    when ``naming`` is given, names it (a path, usually)."""
    with pytest.raises(exc, match=match) as info:
        yield info
    assert type(info.value) is exc, type(info.value)
    if naming is not None:
        assert str(naming) in str(info.value)


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width × height black pixels: a few hundred KB that would decode to
    width * height bytes as grey."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    z = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the row's bits
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path

"""Tests for gpumlp.files.safeio, reading untrusted files within sizes fixed before anything
inflates: the capped and bomb-stopping stream, the pickle walk, and ``.npy`` members checked
against their expected shape or the memory free. (The same bombs given to the ``gpumlp``
command are in test_memory.py.)"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from gpumlp.files import safeio
from gpumlp.files.safeio import Oversize, check_pickle, open_untrusted, read_npy_member

# -- the stream: a cap, and a gzip bomb stopped early -------------------------------------------


def test_a_plain_file_is_read_up_to_its_cap(tmp_path):
    path = tmp_path / "plain.bin"
    path.write_bytes(bytes(range(256)) * 8)
    with open_untrusted(path, "the file", limit=2048) as f:
        assert f.read() == path.read_bytes()
    with pytest.raises(Oversize, match="the file holds more than 2,047 bytes"):
        with open_untrusted(path, "the file", limit=2047) as f:
            f.read()


def test_gzip_is_inflated_and_capped(tmp_path):
    path = tmp_path / "data.gz"
    path.write_bytes(gzip.compress(bytes(range(256)) * 64))
    with open_untrusted(path, "the data") as f:
        assert f.read() == bytes(range(256)) * 64
    with pytest.raises(Oversize, match="the data holds more than 1,000 bytes"):
        with open_untrusted(path, "the data", limit=1000) as f:
            f.read(2000)


def test_a_gzip_bomb_stops_past_the_floor(tmp_path, monkeypatch):
    # Past INFLATE_FLOOR (made 1 MiB here) a stream may inflate 100 times what it has read:
    # 4 MiB of zeros (a thousandfold) stops right after the floor, 4 MiB of bytes that
    # inflate 2 to 3 times reads to its end.
    monkeypatch.setattr(safeio, "INFLATE_FLOOR", 1 << 20)
    bomb, fine = tmp_path / "bomb.gz", tmp_path / "fine.gz"
    bomb.write_bytes(gzip.compress(bytes(4 << 20)))
    rng = np.random.default_rng(0)
    fine.write_bytes(gzip.compress(rng.integers(0, 8, 4 << 20, dtype=np.uint8).tobytes()))
    with open_untrusted(fine, "fine") as f:
        assert len(f.read()) == 4 << 20
    with pytest.raises(Oversize, match=r"bomb inflates to more than 100 times .*: a gzip bomb\?"):
        with open_untrusted(bomb, "bomb") as f:
            while f.read(1 << 16):
                assert f.raw.done <= (1 << 20) + (1 << 20)  # stopped within a chunk


# -- a pickle walked before it is loaded --------------------------------------------------------


def walk(data: bytes, max_ops: int = 100) -> None:
    check_pickle(io.BytesIO(data), "the pickle", max_ops=max_ops)


def test_a_pickle_of_arrays_passes_the_walk():
    walk(pickle.dumps((np.zeros((3, 4), np.float32), np.arange(3)), protocol=2), max_ops=200)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x02" + b"]" * 101 + b".", "the pickle has more than 100 opcodes"),
        (b"\x80\x02Nq\x65.", "stores at memo index 101, past 100"),  # BINPUT
        (b"\x80\x02Nr" + struct.pack("<I", 1 << 30) + b".", "memo index 1,073,741,824"),
        (b"\x80\x02Np999999\n.", "memo index 999,999"),  # PUT, protocol 0's
        (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"abc", "expected 1099511627776 bytes"),
        (b"\x80\x02]", "pickle exhausted before seeing STOP"),
        (b"\x80\x02\xff.", "opcode"),
    ],
    ids=["opcodes", "binput", "long-binput", "put", "declared-length", "truncated", "unknown"],
)
def test_a_pickle_that_would_build_more_than_it_holds_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        walk(data)


# -- .npy members checked before they are read --------------------------------------------------


def zip_with(arrays: dict[str, np.ndarray], compress: int = zipfile.ZIP_STORED) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as zf:
        for name, a in arrays.items():
            member = io.BytesIO()
            np.save(member, a)
            zf.writestr(name + ".npy", member.getvalue())
    return zipfile.ZipFile(buf)


def test_member_is_read_against_its_expected_shape():
    zf = zip_with({"w": np.ones((5, 4), np.float32), "big": np.zeros((100, 100))}, 8)
    w = read_npy_member(zf, zf.getinfo("w.npy"), shape=(5, 4))
    assert w.shape == (5, 4) and (w == 1).all()
    with pytest.raises(ValueError, match=r"array 'w' has shape \(5, 4\), expected \(4, 5\)"):
        read_npy_member(zf, zf.getinfo("w.npy"), shape=(4, 5))
    # The declared size alone refuses a member too large for its shape: nothing is inflated.
    with pytest.raises(Oversize, match="array 'big' declares 80,128 bytes, more than the 65,6"):
        read_npy_member(zf, zf.getinfo("big.npy"), shape=(5, 4))


def test_member_without_a_shape_must_fit_in_memory(monkeypatch):
    zf = zip_with({"x": np.zeros((1000, 100))})
    monkeypatch.setattr(safeio, "host_available_memory", lambda: 500_000)
    with pytest.raises(Oversize, match="array 'x' would need 800,000 bytes but only 500,000 "
                       "bytes of memory is free"):  # fmt: skip
        read_npy_member(zf, zf.getinfo("x.npy"), max_bytes=10 << 20)
    with pytest.raises(Oversize, match="declares 800,128 bytes, more than the 75,536"):
        read_npy_member(zf, zf.getinfo("x.npy"), max_bytes=10_000)

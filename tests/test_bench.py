"""Smoke test of scripts/bench.py: it runs, honours its flags and writes sane JSON."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = module  # dataclasses look their module up while the class is made
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules["bench"]


def test_quick_run_writes_json(bench, tmp_path, capsys):
    try:
        import torch  # noqa: F401
    except ImportError:
        backends = ["numpy"]
    else:
        backends = ["numpy", "torch-cpu"]
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "2000", "--cases", "784-30-10@100", "--backends", *backends]
    assert bench.main([*argv, "--json", str(out)]) == 0

    doc = json.loads(out.read_text())
    case = doc["cases"]["784-30-10@100"]
    assert case["n"] == 2000 and doc["settings"]["n"] == 2000
    numpy_row = case["backends"]["numpy"]
    assert numpy_row["median"] > 0
    assert len(numpy_row["repeats"]) == 1
    assert numpy_row["samples_per_s"] == pytest.approx(2000 / numpy_row["median"])
    assert doc["machine"]["command"][1:] == [*argv, "--json", str(out)]
    assert "784-30-10@100" in capsys.readouterr().out
    if "torch-cpu" in backends:
        assert set(case["backends"]["torch-cpu"]["by_threads"]) >= {"1"}
        ratio = numpy_row["ratio"]
        assert ratio > 0 and math.isfinite(ratio)
        assert numpy_row["peer"] == "torch-cpu"


@pytest.mark.parametrize("flag", ["--engines", "--engine"])
def test_each_engine_is_its_own_row(bench, tmp_path, flag):
    out = tmp_path / "b.json"
    argv = ["--quick", "--n", "500", "--cases", "784-30-10@100", "--backends", "numpy"]
    assert bench.main([*argv, flag, "generic", "fused", "auto", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["cases"]["784-30-10@100"]["backends"]
    assert {"numpy-generic", "numpy-fused", "numpy"} <= set(rows)
    assert all(rows[r]["median"] > 0 for r in ("numpy-generic", "numpy-fused", "numpy"))
    assert doc["settings"]["engines"] == ["generic", "fused", "auto"]


@pytest.mark.parametrize("bad", [["--n", "0"], ["--cases", "nope"], ["--backends", "jax"]])
def test_bad_arguments_exit_2(bench, bad, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(bad)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(("ratio", "text"), [(5.26, "5.3x faster"), (0.8, "0.8x (slower)")])
def test_format_ratio(bench, ratio, text):
    assert bench.format_ratio(ratio) == text

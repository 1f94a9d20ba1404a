"""scripts/tables_vs_sklearn.py: it measures both libraries on a table as a user runs them
(the command line on a CSV, scored on the held-out rows) and writes its section of
docs/results.md, keeping the rest of the file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sklearn", minversion="1.6", reason="the script compares with scikit-learn")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "tables_vs_sklearn.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("tables_vs_sklearn", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_seed_of_iris_is_measured_and_its_section_replaced(script, tmp_path, numpy_env):
    results = script.measure(["iris"], [0])
    got = results["iris"]
    assert set(got) == {"scikit-learn", "gpumlp train", "gpumlp train --val-split 0.1",
                        "gpumlp.sklearn"}  # fmt: skip
    for column, (record,) in got.items():
        assert record["accuracy"] >= 0.9 and record["seconds"] > 0, column
    assert got["gpumlp train"][0]["epochs"] == 200  # no validation split: every epoch
    section = script.table(results, [0])
    assert section.startswith(script.HEADING) and "| iris (150, 4, 3) |" in section
    doc = tmp_path / "results.md"
    doc.write_text("# Results\n\nabove\n\n## Later\n\nbelow\n")
    script.write_section(doc, section)
    with doc.open("a") as f:
        f.write("### Reading\n\nby hand\n")
    script.write_section(doc, section.replace("iris (150", "IRIS (150"))  # replaced, not added
    text = doc.read_text()
    assert text.count(script.HEADING) == 1 and "IRIS (150, 4, 3)" in text
    assert text.startswith("# Results\n\nabove\n\n") and "\n## Later\n\nbelow\n" in text
    assert text.endswith("\n### Reading\n\nby hand\n") and "iris (150" not in text


def test_diabetes_is_scored_by_r2_within_reach_of_scikit_learn(script, numpy_env):
    # Issue 29's target: gpumlp train --task regression within 0.05 of scikit-learn's R²
    results = script.measure(["diabetes"], [0])
    got = {column: record["r2"] for column, (record,) in results["diabetes"].items()}
    assert set(got) == {"scikit-learn", "scikit-learn, targets standardized", "gpumlp train",
                        "gpumlp train --val-split 0.1", "gpumlp.sklearn"}  # fmt: skip
    assert got["gpumlp train"] >= got["scikit-learn"] - 0.05
    assert (
        min(got["gpumlp train"], got["gpumlp train --val-split 0.1"], got["gpumlp.sklearn"]) > 0.2
    )
    section = script.table(results, [0])
    assert "| diabetes (442, 10) |" in section and "| gpumlp train R² |" in section
    assert "accuracy %" not in section  # no classifier measured: no classifiers' table

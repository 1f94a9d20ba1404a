"""The test command and CI: the README's command is the everyday suite; every group of tests it
leaves out (a marker in pyproject's ``-m`` expression) has a run of its own in ``.ci/run``, so CI
still runs every test."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest_ini() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


def _left_out() -> list[str]:
    """The markers the everyday command's ``-m 'not a and not b ...'`` leaves out."""
    addopts = shlex.split(_pytest_ini()["addopts"])
    expression = addopts[addopts.index("-m") + 1]
    names = re.findall(r"\bnot (\w+)", expression)
    assert expression == " and ".join(f"not {n}" for n in names), expression
    return names


def test_every_group_the_everyday_command_leaves_out_runs_in_ci():
    ci = (ROOT / ".ci" / "run").read_text()
    (heavy,) = re.findall(r"^HEAVY=\(([\w ]*)\)$", ci, re.M)
    run_in_ci = set(heavy.split()) | set(re.findall(r"python3 -m pytest .*-m (\w+)$", ci, re.M))
    left_out = _left_out()
    assert {"slow", "mutants"} <= set(left_out)
    assert set(left_out) <= run_in_ci, f"left out of CI: {set(left_out) - run_in_ci}"
    readme = (ROOT / "README.md").read_text().split("```")[1]  # the first lines' block
    (command,) = [line.split("  #")[0].strip() for line in readme.splitlines() if "pytest" in line]
    assert command in ci.split("HEAVY=")[0]  # the README's command itself, before them


def test_every_group_is_a_declared_marker_documented_in_the_readme():
    declared = {line.split(":")[0] for line in _pytest_ini()["markers"]}
    readme = (ROOT / "README.md").read_text()
    for name in _left_out():
        assert name in declared, name
        assert f"pytest -m {name}" in readme, f"README does not say how to run {name!r}"


def test_the_everyday_command_prints_its_ten_slowest_tests():
    assert "--durations=10" in shlex.split(_pytest_ini()["addopts"])

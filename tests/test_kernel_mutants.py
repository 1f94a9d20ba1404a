"""A test of the tests: each planted kernel bug of ``cuda_emu/mutants.py`` makes the emulated
tests that reach it fail, in the checked build (sanitizers on), and those tests pass without it.

Marked ``mutants``: the everyday test command leaves them out; ``.ci/run`` runs them after it.
Each mutant runs its tests in a fresh process (``CUDA_EMU_MUTANT`` names it there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cuda_emu.mutants import ENV, MUTANTS
from gpumlp.engines import _kernels

pytestmark = pytest.mark.mutants

ROOT = Path(__file__).resolve().parents[1]


def _pytest(tests, mutant=None):
    env = {**os.environ, "CUDA_EMU_SANITIZE": "1", ENV: mutant or ""}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "",
           *sorted(set(tests))]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_mutants_tests_pass_without_a_mutant(cxx20):
    done = _pytest([t for m in MUTANTS.values() for t in m.tests])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_a_planted_kernel_bug_fails_its_tests(cxx20, name):
    mutant = MUTANTS[name]
    for dtype in ("float32", "float64"):  # the bug is planted, not a no-op
        assert _kernels.kernel_source(dtype).count(mutant.old) == 1, (name, dtype)
    done = _pytest(mutant.tests, name)
    # 1: tests ran and failed (not 2-5: an interrupted run, a usage error, nothing collected)
    assert done.returncode == 1, f"{name} ({mutant.kind}) was not caught:\n{done.stdout[-3000:]}"
    assert " failed" in done.stdout.splitlines()[-1]

"""scripts/mpi_cost.py (the allreduce's cost beside a step, docs/distributed.md): it runs to
its one line on one rank and on two, with the packed buffer of the book's network."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from helpers.mpi import run_job

pytestmark = pytest.mark.mpi

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mpi_cost.py"
PARAMS = 784 * 30 + 30 + 30 * 10 + 10  # the book's [784, 30, 10]


@pytest.mark.parametrize("ranks", [1, 2])
def test_mpi_cost_prints_the_step_and_the_allreduce_of_the_packed_buffer(ranks):
    done = run_job(ranks, [sys.executable, str(SCRIPT)])
    assert done.returncode == 0, done.stderr[-3000:]
    kb = (PARAMS + 1) * 4 / 1e3  # float32 gradients and the flag
    alone = r" \(without a communicator \d+ µs\)" if ranks == 1 else ""
    line = (rf"ranks {ranks}: step \d+ µs at global batch 10{alone}, "
            rf"allreduce of {kb:.0f} KB \d+\.\d µs")  # fmt: skip
    assert re.fullmatch(line, done.stdout.strip()), done.stdout

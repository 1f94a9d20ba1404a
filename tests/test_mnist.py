"""Real MNIST through the command line: the book's numbers, reproduced (slow; fetches the data
into the cache if it is not there yet)."""

from __future__ import annotations

import re
import statistics

import pytest

from gpumlp import cli

pytestmark = [pytest.mark.slow, pytest.mark.network]


def _train(tmp_path, capsys, *flags: str) -> list[int]:
    """Run ``gpumlp train`` with flags; returns the correct counts printed after each epoch."""
    assert cli.main(["train", "--quiet", "--out", str(tmp_path), *flags]) == 0
    out = capsys.readouterr().out
    return [int(k) for k in re.findall(r"^Epoch \d+: (\d+) / 10000", out, flags=re.M)]


def test_first_epoch_reaches_the_books_90_percent(tmp_path, capsys):
    # The book's chapter 1 reports ~90-91% after one epoch. A single seed is a coin toss near
    # the line (89.5-91.0% over ten seeds), so the claim tested is the typical run: the median
    # of three seeds.
    firsts = [
        _train(tmp_path / str(s), capsys, "--epochs", "1", "--seed", str(s))[0] for s in range(3)
    ]
    assert statistics.median(firsts) >= 9000, firsts


def test_book_network_reaches_95_percent_in_30_epochs(tmp_path, capsys):
    counts = _train(tmp_path, capsys, "--seed", "0")  # every flag at its default: the book's run
    assert len(counts) == 30
    assert max(counts) >= 9450 and counts[-1] >= 9450, counts


def test_beyond_the_book_recipe_reaches_98_5_percent(tmp_path, capsys):
    # docs/results.md: [784,1024,1024,10] ReLU + softmax, momentum, dropout, cosine; 98.60 ± 0.04%
    # final over two seeds (4-5 minutes on 2 cores). A run reaches 98.5% at its best epoch.
    counts = _train(
        tmp_path, capsys, "--sizes", "784,1024,1024,10", "--activation", "relu",
        "--output-activation", "softmax", "--cost", "log_likelihood", "--init", "he",
        "--epochs", "30", "--batch-size", "100", "--lr", "0.05", "--optimizer", "momentum",
        "--momentum", "0.9", "--dropout", "0.3", "--schedule", "cosine", "--seed", "0",
    )  # fmt: skip
    assert max(counts) >= 9850 and counts[-1] >= 9830, counts

"""Tests for gpumlp.costs' (output activation, cost) rules: log_likelihood needs a softmax output,
cross_entropy a sigmoid or softmax one, quadratic any; every other pair of the registries is
refused when the network is built, with the valid pairs listed. (The math of every valid pair is
checked in test_network.py; the same refusal on the command line in test_cli_train.py.)"""

from __future__ import annotations

import pytest

import gpumlp
from gpumlp.costs import COSTS, VALID_PAIRS
from helpers.nets import ALL_PAIRS, INVALID_PAIRS


def test_the_rules_are_the_documented_ones():
    assert COSTS["log_likelihood"].outputs == {"softmax"}
    assert COSTS["cross_entropy"].outputs == {"sigmoid", "softmax"}
    assert COSTS["quadratic"].outputs is None
    for out, cost in ALL_PAIRS:  # VALID_PAIRS is what each cost's `outputs` says
        allowed = COSTS[cost].outputs
        assert ((out, cost) in VALID_PAIRS) == (allowed is None or out in allowed)
    assert ("sigmoid", "log_likelihood") in INVALID_PAIRS  # the silent 14% run


@pytest.mark.parametrize(("out", "cost"), INVALID_PAIRS)
def test_an_invalid_pair_is_refused_with_the_valid_pairs_listed(out, cost):
    with pytest.raises(ValueError) as info:
        gpumlp.Network([4, 5, 3], output_activation=out, cost=cost, backend="numpy", seed=0)
    message = str(info.value)
    assert f"cost={cost!r} needs output_activation in" in message
    assert f"got output_activation={out!r}" in message
    for valid_out, valid_cost in VALID_PAIRS:
        if valid_cost != "quadratic":
            assert f"({valid_out}, {valid_cost})" in message
    assert "quadratic with any output" in message and "\n" not in message


@pytest.mark.parametrize(("out", "cost"), VALID_PAIRS)
def test_a_valid_pair_is_built(out, cost):
    net = gpumlp.Network([4, 5, 3], output_activation=out, cost=cost, backend="numpy", seed=0)
    assert (net.output_activation, net.cost.name) == (out, cost)

"""gpumlp.targets: regression targets standardized per column and the outputs scaled back."""

from __future__ import annotations

import numpy as np
import pytest

from gpumlp.targets import TargetScaling


def test_targets_are_standardized_and_outputs_come_back_in_their_units():
    y = np.array([[100.0, 1.0], [300.0, 1.0], [200.0, 1.0]])  # the second column is constant
    s = TargetScaling.fit(y)
    scaled = s.scaled(y)
    assert scaled[:, 0].mean() == pytest.approx(0.0) and scaled[:, 0].std() == pytest.approx(1.0)
    assert np.array_equal(scaled[:, 1], [0.0, 0.0, 0.0])  # shifted, not divided by 0
    assert np.allclose(s.unscaled(scaled), y) and s.unscaled(scaled).dtype == np.float64
    assert s.unscaled(np.array([[1.0, 2.0]]))[0] == pytest.approx([200 + 81.6497, 3.0], rel=1e-5)
    with pytest.raises(ValueError, match=r"2-D \(n, k\)"):
        TargetScaling.fit(np.ones(3))

"""Tests for gpumlp.modelfile: a valid, signed checkpoint whose model metadata or parameters
are wrong (missing, invalid, of the wrong shape, NaN) is refused with a CheckpointError naming
the file and what is wrong."""

from __future__ import annotations

import pytest

import gpumlp
from conftest import BAD_CHECKPOINT_CONTENTS


@pytest.mark.parametrize(
    ("make", "exc", "match"), [pytest.param(*c[1:], id=c[0]) for c in BAD_CHECKPOINT_CONTENTS]
)
def test_bad_checkpoint(make, exc, match, tmp_path, model_file):
    path = make(tmp_path, model_file)
    with pytest.raises(exc, match=match) as info:
        gpumlp.load(path, backend="numpy")
    assert type(info.value) is exc
    assert str(path) in str(info.value)

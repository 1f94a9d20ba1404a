"""A sweep's sampler: Optuna's TPE (with the constant liar, so that workers running at once
do not all pick one point), whose random draws for each trial come from a generator seeded by
the study's seed and the trial's number.

Trial numbers are handed out by the study's storage, one to each trial of any worker: no two
trials anywhere, on any machine or in any rerun, draw from the same sequence, so a second
machine or a resumed study never replays the parameters drawn before (a sampler seeded once
per worker replays its first draws in every worker and every rerun). A fresh study run by one
worker draws the same trials each time; a resumed one goes on without repeating, not
necessarily as an uninterrupted run would have.

Imports Optuna: imported by :func:`gpumlp.sweeps.studystore.open_study` when called.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

from optuna.samplers import BaseSampler, TPESampler

__all__ = ["TrialSeededTPE", "trial_seed"]


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial ``number`` of a study seeded ``seed``: 32 bits of a SHA-256 of both."""
    digest = hashlib.sha256(f"gpumlp-sweep:{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _tpe(seed: int | None) -> TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna calls constant_liar experimental
        return TPESampler(seed=seed, constant_liar=True)


class TrialSeededTPE(BaseSampler):
    """TPE made anew for each trial, seeded by :func:`trial_seed` (the module's rule); every
    call of the sampler's interface goes to it. ``seed`` None: OS randomness."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._tpe = _tpe(seed)

    def before_trial(self, study: Any, trial: Any) -> None:
        seed = None if self.seed is None else trial_seed(self.seed, trial.number)
        self._tpe = _tpe(seed)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> Any:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        return self._tpe.sample_independent(study, trial, name, distribution)

    def after_trial(
        self, study: Any, trial: Any, state: Any, values: Sequence[float] | None
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()

"""Runs: one training run from flags, its folder and lock, the parity comparison, plots."""

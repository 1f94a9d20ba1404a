"""Sweeps: the search space, one trial, the Optuna storage and the studies."""

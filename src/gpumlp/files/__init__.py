"""Files: written whole or not at all, untrusted files read within bounds, checkpoints and
model files."""

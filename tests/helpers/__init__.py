"""Helpers of the test suite, by theme; the fixtures that use them are in ``tests/conftest.py``.

- :mod:`helpers.nets`: small problems and networks, host copies of parameters and their checks;
- :mod:`helpers.data`: MNIST files in every format, small;
- :mod:`helpers.bad_files`: data files, checkpoints and images that must be refused, and
  ``raises_exactly``;
- :mod:`helpers.cli`: ``gpumlp`` in process and in a subprocess, waits on events, run folders;
- :mod:`helpers.trainer`: ``gpumlp train`` in a subprocess, its lines read as they come;
- :mod:`helpers.plots`: learning-curve checks;
- :mod:`helpers.faults`: a full disk, a step out of memory, a fresh process's peak memory;
- :mod:`helpers.stepcheck`: one training step of an engine against the NumPy oracle;
- :mod:`helpers.counting`: a namespace stand-in that counts calls, and ``tracemalloc``'s view
  of a block (what a fast step costs);
- :mod:`helpers.machines`: a PostgreSQL server of a test's own, and namespaces as machines;
- :mod:`helpers.mpi`: MPI jobs under MPICH's ``mpiexec``, and the reference a two-rank run
  must equal; :mod:`helpers.mpi_fit`, the script such a job runs on every rank.

Tests import them as ``from helpers.cli import run`` (``tests/`` is on ``sys.path`` when pytest
collects it, and in the fresh processes ``run_python`` starts).
"""

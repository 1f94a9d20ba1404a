"""Test infrastructure that runs unmodified CUDA kernels on the CPU.

- :mod:`cuda_emu.emulator`: compile a CUDA C source with the host C++ compiler under
  ``cuda_emu.h`` and launch its kernels from Python (``compile_module(code).get_function(n)``).
- :mod:`cuda_emu.fakecupy`: a NumPy-backed ``cupy`` that runs its ``RawModule`` kernels with the
  emulator and counts syncs, copies and launches.
- :mod:`cuda_emu.fixtures`: the pytest fixtures ``fake_cupy`` and ``cxx20``.
"""

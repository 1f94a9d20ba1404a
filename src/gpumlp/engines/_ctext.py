"""How the generated C and CUDA source is written: a kernel's signature around its body, a
block of code indented, the name a C declaration declares, and a declaration renamed
``prepare_<name>``. Shared by the CUDA kernels' generator (:mod:`._kernels`), the persistent
kernels' (:mod:`._persistent_src`) and the native engine's (:mod:`._native_src`), so all three
format their text alike."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["decl_name", "indent", "kernel", "prepared"]


def kernel(name: str, params: Sequence[str], body: str) -> str:
    """An ``extern "C"`` kernel ``name`` of ``params`` (C declarations) around ``body``, its
    parameter list wrapped before 100 columns."""
    lines, line = [], f'extern "C" __global__ void {name}('
    for k, param in enumerate(params):
        piece = param + (", " if k + 1 < len(params) else ")")
        if len(line) + len(piece) > 99:
            lines.append(line.rstrip())
            line = " " * 8
        line += piece
    return "\n".join([*lines, line, "{", body, "}"])


def indent(code: str, spaces: int) -> str:
    """Each line of ``code`` (empty ones too) after ``spaces`` spaces."""
    return "\n".join(" " * spaces + line for line in code.splitlines())


def decl_name(decl: str) -> str:
    """The name C declaration ``decl`` declares (``"const real* X"`` → ``"X"``)."""
    return decl.replace("*", " ").split()[-1]


def prepared(decl: str) -> str:
    """C declaration ``decl`` of ``prepare_<name>`` (``"double beta1"`` → ``"double
    prepare_beta1"``; a bare name too, ``"beta1"`` → ``"prepare_beta1"``, as the host passes
    it): a preparation's parameter beside the update's of the same name."""
    return re.sub(r"(\w+)$", r"prepare_\1", decl)

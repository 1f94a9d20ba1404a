"""Whether a source generated from the registries (the CUDA kernels, the native engine's C++)
covers an entry: a user's own activation, cost or optimizer is not in it, even under a
built-in name."""

from __future__ import annotations

from typing import Any

from ..optim import get_optimizer

__all__ = ["generated", "generated_optimizer"]


def generated(entry: Any, registry: dict[str, Any]) -> bool:
    """Whether the source was generated for ``entry`` (an Activation or Cost): it is the
    registry's own entry of its name. One a user made is not, even with a ``cuda_fn``, or
    named as a built-in one."""
    return bool(registry.get(entry.name) == entry)


def generated_optimizer(opt: Any) -> bool:
    """Whether the source was generated for optimizer ``opt``: the registry's own class of
    its name, with the CUDA form the source was generated from (an optimizer without a CUDA
    form is in no generated source)."""
    if opt.cuda() is None:
        return False
    try:
        built = get_optimizer(opt.name)
    except ValueError:  # a name the registry does not know
        return False
    return type(built) is type(opt) and built.cuda() == opt.cuda()

"""``ratios=``: a sparsity of its own for some layers (Torch-Pruning's ``pruning_ratio_dict``).

Keys are layer names or module instances of the model; a container's name covers every layer it holds,
and the longest (most specific) name that covers a group's root layer wins. The groups it covers keep
``ceil((1 - ratio) * C)`` of their dense channels (a group of coupled layers, a residual stage, is covered
when one of its layers is) (then the floor and rounding, as every group); the
others follow the target.
"""

from __future__ import annotations

import math

import torch.nn as nn

from ..errors import UsageError


def layer_ratios(model: nn.Module, ratios) -> tuple[tuple[str, float], ...]:
    """``ratios`` as (layer name, sparsity) pairs, checked against ``model``; () when None."""
    if not ratios:
        return ()
    if not isinstance(ratios, dict):
        raise UsageError(
            f"ratios must be a dict of layer -> sparsity, got a {type(ratios).__name__}", ("ratios",)
        )
    names = {id(m): n for n, m in model.named_modules()}
    pairs = []
    for key, value in ratios.items():
        name = names.get(id(key)) if isinstance(key, nn.Module) else key
        if not isinstance(name, str) or name not in dict(model.named_modules()):
            shown = type(key).__name__ if isinstance(key, nn.Module) else repr(key)
            raise UsageError(f"ratios: {shown} is not a layer of {type(model).__name__}", ("ratios",))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise UsageError(f"ratios[{name!r}] must be a sparsity in [0, 1), got {value!r}", ("ratios",))
        pairs.append((name, float(value)))
    return tuple(pairs)


def ratio_for(layers: str | tuple[str, ...], ratios: tuple[tuple[str, float], ...]) -> float | None:
    """The sparsity ``ratios`` give a group whose outputs are those of ``layers`` (its root's name, or all
    its layers'): the most specific key covering any of them; None when no key covers one."""
    names = (layers,) if isinstance(layers, str) else layers
    covering = [(len(k), r) for k, r in ratios for n in names if not k or n == k or n.startswith(k + ".")]
    return max(covering)[1] if covering else None


def overridden(keep: list[int], names: list, totals: list[int], ratios) -> list[int]:
    """``keep`` with the covered groups' counts replaced by their own ratio's."""
    result = []
    for k, name, total in zip(keep, names, totals):
        r = ratio_for(name, ratios)
        result.append(k if r is None else math.ceil((1 - r) * total - 1e-9))
    return result

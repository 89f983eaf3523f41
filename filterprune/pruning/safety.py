"""Proof that a pruned network still runs, and which groups break it when it does not.

torch-pruning rewrites layer tensors, but not the plain Python numbers some models compute with (a
ViT reshapes by its ``hidden_dim`` attribute, for example), so a group can be removed "successfully"
and leave a model whose forward fails. ``forward_failure`` runs one forward and, if it fails, names
the innermost layer that was running. ``breaking_groups`` finds which groups cause it by bisection
over fresh copies of the dense model, so the pipeline can prune every other group and say which it
left whole and why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch.nn as nn

from ..example import changed, structure
from ..tracing import profile


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:200]}"


def forward_failure(model: nn.Module, example_inputs, out_shape: tuple | None = None) -> str | None:
    """None when ``model(example_inputs)`` runs (with ``out_shape`` if given: a tensor's shape, or an
    ``example.structure``); else a one-line reason naming the innermost layer that was running when it
    failed."""
    prof = profile(model, example_inputs, catch=True)
    if prof.failure:
        where, e = prof.failure
        name = next((n for n, m in model.named_modules() if m is where), "")
        label = f"layer '{name}'" if name else "the model's own forward"
        return f"{_one_line(e)} in {label} ({type(where).__name__})"
    if out_shape and isinstance(out_shape[0], str):
        return changed(out_shape, structure(prof.output))
    out = prof.output[0] if isinstance(prof.output, (tuple, list)) else prof.output
    if out_shape is not None and tuple(out.shape) != tuple(out_shape):
        return f"output shape changed from {tuple(out_shape)} to {tuple(out.shape)}"
    return None


def breaking_groups(
    trial: Callable[[list[str]], str | None], names: list[str], known: str | None = None
) -> dict[str, str]:
    """Group names whose removal alone makes ``trial`` fail, with the reason, found by bisection.

    ``trial(subset)`` prunes ``subset`` on a fresh copy and returns ``forward_failure``'s reason or None.
    ``known`` is the already-measured result for the whole list. A failure that needs two groups
    together is not split apart; the caller re-checks the final model.
    """
    reason = trial(names) if known is None else known
    if reason is None:
        return {}
    if len(names) == 1:
        return {names[0]: reason}
    mid = len(names) // 2
    return {**breaking_groups(trial, names[:mid]), **breaking_groups(trial, names[mid:])}


def restore(model: nn.Module, pristine: nn.Module) -> None:
    """Put ``model`` (the same object, so callers' references stay valid) back to ``pristine``."""
    model.__dict__.update(copy.deepcopy(pristine).__dict__)

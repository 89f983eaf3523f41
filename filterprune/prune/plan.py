"""Allocation: how many channel units each group keeps, from the scores and the sparsity.

layerwise: every group keeps ceil((1 - s) * C) (the definition of channel sparsity s).
global: one score threshold across all groups keeps ceil((1 - s) * total) units network-wide.
Then a per-layer floor (so no layer collapses) and rounding of kept counts to a multiple of round_to
(to the nearest multiple, so the achieved sparsity stays near the target; never above C).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from ..errors import UsageError

SCOPES = ("layerwise", "global")


@dataclass(frozen=True)
class PlanConfig:
    sparsity: float
    scope: str = "layerwise"
    round_to: int = 1
    layer_floor: float = 0.1  # each layer keeps at least this fraction of its channels (and >= 1)

    def __post_init__(self):
        if not (0.0 <= self.sparsity < 1.0):
            raise UsageError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in SCOPES:
            raise UsageError(f"unknown scope {self.scope!r}; valid: {', '.join(SCOPES)}")
        if self.round_to < 1:
            raise UsageError(f"--round-to must be >= 1, got {self.round_to}")
        if not (0.0 < self.layer_floor <= 1.0):
            raise UsageError(f"--layer-floor must be in (0, 1], got {self.layer_floor}")


def _round(keep: int, units: int, k: int) -> int:
    if k <= 1:
        return keep
    return min(units, max(k, int(round(keep / k)) * k))


def allocate(scores: list[torch.Tensor], cfg: PlanConfig) -> list[int]:
    """Units kept per group, given each group's per-unit scores (higher = keep)."""
    units = [len(s) for s in scores]
    if cfg.scope == "layerwise":
        keep = [math.ceil((1 - cfg.sparsity) * u - 1e-9) for u in units]
    else:
        flat = torch.cat([s.float() for s in scores])
        n_keep = math.ceil((1 - cfg.sparsity) * len(flat) - 1e-9)
        kept = torch.zeros(len(flat), dtype=torch.bool)
        kept[torch.argsort(flat, descending=True, stable=True)[:n_keep]] = True
        keep = [int(c.sum()) for c in torch.split(kept, units)]
    floors = [max(1, math.ceil(cfg.layer_floor * u - 1e-9)) for u in units]
    floored = sum(k < f for k, f in zip(keep, floors))
    if floored:
        warnings.warn(f"{floored} layer(s) would keep less than {100 * cfg.layer_floor:g}% of their channels; "
                      "kept at the floor (--layer-floor)", stacklevel=2)
    keep = [max(k, f) for k, f in zip(keep, floors)]
    return [_round(k, u, cfg.round_to) for k, u in zip(keep, units)]

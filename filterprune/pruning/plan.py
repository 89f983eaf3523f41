"""Allocation: how many channel units each group keeps, from the scores and the sparsity.

layerwise: every group keeps ceil((1 - s) * C) (the definition of channel sparsity s).
global: one score threshold across all groups keeps ceil((1 - s) * total) units network-wide.
C, total and the floor refer to the *dense* widths (``totals``), so iterative steps that prune an already
pruned network still aim at the dense-relative target and never let a floor drift down.
Then a per-layer floor (so no layer collapses) and rounding of kept counts to a multiple of round_to
(to the nearest multiple, so the achieved sparsity stays near the target; never above C).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

import torch

from ..config import check_target_precision, check_value
from ..errors import UsageError
from ..targets import Sparsity, Target
from .ratios import overridden


@dataclass(frozen=True)
class PlanConfig:
    target: Target  # a float given here is a channel sparsity: __post_init__ makes it a Sparsity
    scope: str = "layerwise"
    round_to: int | str = 1  # or "auto": hardware-aware widths measured on target_runtime (pruning/align.py)
    layer_floor: float = 0.1  # each layer keeps at least this fraction of its channels (and >= 1)
    target_runtime: str = "onnxruntime"  # for round_to="auto" and the measured targets
    target_batch: int = 64
    threads: int | None = None  # threads of the target runtime's measurements (None: torch's)
    ratios: tuple = ()  # (layer name, sparsity) pairs for the layers under those names (ratios.py)
    target_precision: str = "fp32"  # the kernels measured targets and round_to="auto" time (fp32, int8, bf16)

    def __post_init__(self):
        if not isinstance(self.target, Target):
            object.__setattr__(self, "target", Sparsity(self.target))
        for key in (
            "scope",
            "round_to",
            "layer_floor",
            "target_runtime",
            "target_batch",
            "threads",
            "target_precision",
        ):
            check_value(key, getattr(self, key))  # the options' own checks, defined once in config.py
        check_target_precision(self.target_precision, self.target_runtime)
        if self.round_to != "auto" and not (isinstance(self.round_to, int) and self.round_to >= 1):
            raise UsageError(
                f"round_to must be an integer >= 1 or 'auto', got {self.round_to!r}", ("round_to",)
            )

    @property
    def sparsity(self) -> float:
        """The channel sparsity the allocation cuts at (a MAC or latency target is solved into one first)."""
        if not isinstance(self.target, Sparsity):
            raise TypeError(f"allocation needs a sparsity; {self.target.label()} is solved into one first")
        return self.target.value

    def at(self, sparsity: float) -> PlanConfig:
        return replace(self, target=Sparsity(sparsity))


def _round(keep: int, units: int, k: int | str) -> int:
    if isinstance(k, str) or k <= 1:  # "auto" is resolved by prune/align.py after allocation
        return keep
    return min(units, max(k, int(round(keep / k)) * k))


def allocate(
    scores: list[torch.Tensor],
    cfg: PlanConfig,
    totals: list[int] | None = None,
    names: list | None = None,
) -> list[int]:
    """Units kept per group, given each group's per-unit scores (higher = keep) and dense unit counts;
    ``names`` (the groups' root layers) let ``cfg.ratios`` set some groups' counts."""
    units = [len(s) for s in scores]
    totals = totals or units
    if cfg.scope == "layerwise":
        keep = [math.ceil((1 - cfg.sparsity) * t - 1e-9) for t in totals]
    else:
        flat = torch.cat([s.float() for s in scores])
        n_keep = min(len(flat), math.ceil((1 - cfg.sparsity) * sum(totals) - 1e-9))
        kept = torch.zeros(len(flat), dtype=torch.bool)
        kept[torch.argsort(flat, descending=True, stable=True)[:n_keep]] = True
        keep = [int(c.sum()) for c in torch.split(kept, units)]
    if cfg.ratios and names is not None:
        keep = overridden(keep, names, totals, cfg.ratios)
    floors = [max(1, math.ceil(cfg.layer_floor * t - 1e-9)) for t in totals]
    floored = sum(k < f for k, f in zip(keep, floors))
    if floored:
        warnings.warn(
            f"{floored} layer(s) would keep less than {100 * cfg.layer_floor:g}% of their channels; "
            "kept at the floor (--layer-floor)",
            stacklevel=2,
        )
    keep = [max(k, f) for k, f in zip(keep, floors)]
    if isinstance(cfg.round_to, int) and cfg.round_to > 1:
        narrow = [t for k, t in zip(keep, totals) if t < cfg.round_to and k < t]
        if narrow:
            warnings.warn(
                f"--round-to {cfg.round_to} is wider than {len(narrow)} of {len(totals)} layer(s) (the "
                f"narrowest has {min(narrow)} channels): they are kept whole",
                stacklevel=2,
            )
    return [min(u, _round(k, t, cfg.round_to)) for k, u, t in zip(keep, units, totals)]

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
from dataclasses import dataclass

import torch

from ..errors import UsageError

SCOPES = ("layerwise", "global")


@dataclass(frozen=True)
class PlanConfig:
    sparsity: float
    scope: str = "layerwise"
    round_to: int | str = 1  # or "auto": hardware-aware widths measured on target_runtime (prune/align.py)
    layer_floor: float = 0.1  # each layer keeps at least this fraction of its channels (and >= 1)
    target_macs: float | None = None  # prune until MACs <= this fraction of dense (sparsity is then found)
    target_runtime: str = "onnxruntime"  # for round_to="auto" and the latency targets: onnxruntime, openvino, torch, torch:cuda
    target_batch: int = 64
    target_speedup: float | None = None  # prune until the measured speedup on target_runtime is this (latency_target.py)
    target_latency: float | None = None  # or until the measured latency (ms) is this
    threads: int | None = None  # threads of the target runtime's measurements (None: torch's)

    @property
    def latency_targeted(self) -> bool:
        return self.target_speedup is not None or self.target_latency is not None

    def __post_init__(self):
        if self.target_macs is not None and not (0.0 < self.target_macs <= 1.0):
            raise UsageError(f"--target-macs must be in (0, 1], got {self.target_macs}")
        if not (0.0 <= self.sparsity < 1.0):
            raise UsageError(f"--sparsity must be in [0, 1), got {self.sparsity}")
        if self.scope not in SCOPES:
            raise UsageError(f"unknown scope {self.scope!r}; valid: {', '.join(SCOPES)}")
        if self.round_to != "auto" and not (isinstance(self.round_to, int) and self.round_to >= 1):
            raise UsageError(f"--round-to must be an integer >= 1 or 'auto', got {self.round_to!r}")
        if self.target_runtime not in TARGET_RUNTIMES:
            raise UsageError(f"unknown target runtime {self.target_runtime!r}; valid: {', '.join(TARGET_RUNTIMES)}")
        if self.target_runtime == "openvino" and self.round_to == "auto" and not self.latency_targeted:
            raise UsageError("--round-to auto measures onnxruntime, torch or torch:cuda; for OpenVINO use "
                             "--target-speedup / --target-latency")
        if self.target_runtime == "torch:cuda" and not torch.cuda.is_available():
            raise UsageError("--target-runtime torch:cuda needs a CUDA GPU, and none is available")
        if self.target_speedup is not None and not (self.target_speedup > 1 and math.isfinite(self.target_speedup)):
            raise UsageError(f"--target-speedup must be > 1, got {self.target_speedup}")
        if self.target_latency is not None and not (self.target_latency > 0 and math.isfinite(self.target_latency)):
            raise UsageError(f"--target-latency must be > 0 ms, got {self.target_latency}")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")
        if self.target_batch < 1:
            raise UsageError(f"--target-batch must be >= 1, got {self.target_batch}")
        if not (0.0 < self.layer_floor <= 1.0):
            raise UsageError(f"--layer-floor must be in (0, 1], got {self.layer_floor}")


TARGET_RUNTIMES = ("onnxruntime", "openvino", "torch", "torch:cuda")


def _round(keep: int, units: int, k: int | str) -> int:
    if k == "auto" or k <= 1:  # "auto" is resolved by prune/align.py after allocation
        return keep
    return min(units, max(k, int(round(keep / k)) * k))


def allocate(scores: list[torch.Tensor], cfg: PlanConfig, totals: list[int] | None = None) -> list[int]:
    """Units kept per group, given each group's per-unit scores (higher = keep) and dense unit counts."""
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
    floors = [max(1, math.ceil(cfg.layer_floor * t - 1e-9)) for t in totals]
    floored = sum(k < f for k, f in zip(keep, floors))
    if floored:
        warnings.warn(f"{floored} layer(s) would keep less than {100 * cfg.layer_floor:g}% of their channels; "
                      "kept at the floor (--layer-floor)", stacklevel=2)
    keep = [max(k, f) for k, f in zip(keep, floors)]
    if isinstance(cfg.round_to, int) and cfg.round_to > 1:
        narrow = [t for k, t in zip(keep, totals) if t < cfg.round_to and k < t]
        if narrow:
            warnings.warn(f"--round-to {cfg.round_to} is wider than {len(narrow)} of {len(totals)} layer(s) (the "
                          f"narrowest has {min(narrow)} channels): they are kept whole", stacklevel=2)
    return [min(u, _round(k, t, cfg.round_to)) for k, u, t in zip(keep, units, totals)]

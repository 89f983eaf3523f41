"""Unstructured masks (SNIP, GraSP, SynFlow, magnitude, random, IMP) and how they become channel saliency.

The seed studies prune *weights*: a mask at compression c keeps a fraction 10^-c of the prunable weights
(every conv and linear weight, classifier included; biases and normalisation layers are never masked, as
in the SynFlow reference code). Zeroed weights are still computed, so a masked network is exactly as slow
as the dense one. This package computes those masks faithfully and reduces each filter's mask to one
channel saliency, so that the dependency-graph shrink can remove the channels the method liked least.

- ``weights``: which tensors are prunable, and the mask at a density (global or layerwise).
- ``saliency``: mask (+ scores) -> one number per output channel.
- ``schedule``: one-shot and iterative (SynFlow's exponential schedule) scoring rounds; IMP.
- ``control``: the masked-but-dense control model (held masks while finetuning) and its report section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..train import TrainConfig  # annotations only: train -> data -> config imports this package

MASK_SCOPES = ("global", "layerwise")
MASK_REDUCES = ("density", "sum")
MODES = ("shrink", "masked")


@dataclass(frozen=True)
class MaskConfig:
    """How a mask-based criterion builds its mask: compression c (density 10^-c), where the density
    threshold applies (one global threshold, or per layer), how a filter's mask becomes one saliency,
    and IMP's iterations and per-iteration training (a ``filterprune.train.TrainConfig``)."""

    compression: float
    scope: str = "global"
    reduce: str = "density"
    imp_iterations: int = 2
    imp_train: TrainConfig | None = None
    synflow_rounds: int = 100

    def __post_init__(self):
        if not math.isfinite(self.compression) or self.compression < 0:
            raise UsageError(
                f"--compression must be a finite number >= 0 (density 10^-c), got {self.compression}"
            )
        if self.scope not in MASK_SCOPES:
            raise UsageError(f"unknown mask scope {self.scope!r}; valid: {', '.join(MASK_SCOPES)}")
        if self.reduce not in MASK_REDUCES:
            raise UsageError(f"unknown mask reduce {self.reduce!r}; valid: {', '.join(MASK_REDUCES)}")
        if self.imp_iterations < 1:
            raise UsageError(f"--imp-iterations must be >= 1, got {self.imp_iterations}")
        if self.synflow_rounds < 1:
            raise UsageError(f"synflow rounds must be >= 1, got {self.synflow_rounds}")

    @property
    def density(self) -> float:
        return 10**-self.compression

    def to_dict(self) -> dict:
        train = self.imp_train.to_dict() if self.imp_train is not None else None
        return {
            "compression": self.compression,
            "density": self.density,
            "scope": self.scope,
            "reduce": self.reduce,
            "imp_iterations": self.imp_iterations,
            "imp_train": train,
            "synflow_rounds": self.synflow_rounds,
        }

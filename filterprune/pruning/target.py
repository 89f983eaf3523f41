"""``--target-macs F``: prune until the network's MACs are at most F x dense, because users think in speedup.

The sparsity that meets the target is found by bisection on a cost model of the dependency groups: for a
candidate allocation it counts how many output and input channels every conv and linear layer loses
(through each group's index mapping, so concats and flattens count right) and recomputes their MACs — no
trial pruning, so a search costs milliseconds. MACs fall monotonically with sparsity under both scopes,
floors and rounding, so the bisection returns the smallest sparsity that meets the target.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import UsageError
from ..tracing import Weighted, layer_macs, profile
from .plan import PlanConfig, allocate

MAX_SPARSITY = 0.999


@dataclass
class _Layer:
    module: Weighted
    positions: int  # output positions per image (H*W for a conv, tokens for a linear)
    out: int
    inp: int

    def macs(self, out_lost: int = 0, in_lost: int = 0) -> int:
        return layer_macs(self.module, self.positions, self.inp - in_lost, self.out - out_lost)


def layer_costs(model: nn.Module, example_inputs) -> dict[nn.Module, _Layer]:
    """Shape of every conv / linear layer as seen by one forward pass of a single example (a tensor's
    first sample, or an ``example.Example``, counted per sample)."""
    prof = profile(model, example_inputs[:1] if isinstance(example_inputs, torch.Tensor) else example_inputs)
    return {
        m: _Layer(
            m,
            prof.positions(m),
            *(
                (m.out_features, m.in_features)
                if isinstance(m, nn.Linear)
                else (m.out_channels, m.in_channels)
            ),
        )
        for m in prof.layers()
    }


class CostModel:
    """MACs of the network after dropping, in each scored group, its lowest-scored units."""

    def __init__(self, model: nn.Module, example_inputs, scored: list):
        self.layers = layer_costs(model, example_inputs)
        self.scored = scored
        self.deps = []  # per group: [(layer, is_out, root idx tensor)]
        for cg, _ in scored:
            self.deps.append(
                [
                    (
                        item.dep.target.module,
                        item.dep.handler.__name__ == "prune_out_channels",
                        torch.as_tensor(item.root_idxs, dtype=torch.long),
                    )
                    for item in cg.group
                    if item.dep.target.module in self.layers
                ]
            )
        self.current = sum(layer.macs() for layer in self.layers.values())

    def macs(self, keep: list[int]) -> int:
        lost_out: dict[nn.Module, int] = {}
        lost_in: dict[nn.Module, int] = {}
        for (cg, scores), k, deps in zip(self.scored, keep, self.deps):
            drop = torch.argsort(scores, stable=True)[: cg.units - k]
            if len(drop) == 0:
                continue
            mask = torch.zeros(cg.channels, dtype=torch.bool)
            for g in range(cg.ch_groups):
                mask[drop + g * cg.units] = True
            for layer, out, root in deps:
                lost = lost_out if out else lost_in
                lost[layer] = lost.get(layer, 0) + int(mask[root].sum())
        return sum(c.macs(lost_out.get(m, 0), lost_in.get(m, 0)) for m, c in self.layers.items())


def solve_sparsity(cost: CostModel, plan: PlanConfig, totals: list[int], limit: float) -> float:
    """The smallest sparsity whose allocation keeps MACs <= ``limit`` (an absolute MAC count)."""
    scores = [s for _, s in cost.scored]
    names = [cg.layers or cg.root_name for cg, _ in cost.scored]

    def macs_at(s: float) -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cost.macs(allocate(scores, plan.at(s), totals, names))

    if macs_at(0.0) <= limit:
        return 0.0
    if macs_at(MAX_SPARSITY) > limit:
        raise UsageError(
            f"target_macs {plan.target.value:g} is out of reach: the most this model can lose at "
            f"layer_floor {plan.layer_floor:g} and round_to {plan.round_to} still leaves "
            f"{macs_at(MAX_SPARSITY) / limit * plan.target.value:.3f} of the dense MACs",
            ("target_macs", "layer_floor", "round_to"),
        )
    lo, hi = 0.0, MAX_SPARSITY
    while hi - lo > 1e-5:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if macs_at(mid) <= limit else (mid, hi)
    return hi

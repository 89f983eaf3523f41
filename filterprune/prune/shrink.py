"""Score every group, allocate, and physically remove the chosen channels through the dependency graph."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..criteria import Criterion, PruneContext
from ..errors import RunError
from .graph import build_graph, channel_groups, classifier_layers
from .plan import PlanConfig, allocate


@dataclass
class PruneResult:
    history: list  # torch-pruning pruning history, JSON-safe: [[layer name, is_out, [idxs]], ...]
    layers: list[dict] = field(default_factory=list)  # name, channels_before, channels_after
    skipped: list[str] = field(default_factory=list)  # groups the criterion declined to score


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every conv and linear layer, by name."""
    return {n: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
            for n, m in model.named_modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))}


def _unit_scores(cg, raw: torch.Tensor) -> torch.Tensor:
    raw = raw.detach().float().cpu().reshape(-1)
    if len(raw) != cg.channels:
        raise RunError(f"criterion returned {len(raw)} scores for {cg.root_name} with {cg.channels} channels")
    if not torch.isfinite(raw).all():
        raise RunError(f"criterion produced non-finite scores for {cg.root_name}")
    return raw.view(cg.ch_groups, -1).mean(0) if cg.ch_groups > 1 else raw


@torch.no_grad()
def prune(model: nn.Module, criterion: Criterion, plan: PlanConfig, ctx: PruneContext,
          num_classes: int) -> PruneResult:
    """Prune ``model`` in place; returns the replayable history and per-layer widths."""
    before = layer_widths(model)
    DG = build_graph(model, ctx.example_inputs)
    groups = channel_groups(DG, classifier_layers(model, num_classes))
    criterion.check(model)
    with torch.enable_grad():
        criterion.prepare(model, ctx)
    scored, skipped = [], []
    for cg in groups:
        raw = criterion.score(cg.group)
        if raw is None:
            skipped.append(cg.root_name)
        else:
            scored.append((cg, _unit_scores(cg, raw)))
    keep = allocate([s for _, s in scored], plan)
    for (cg, scores), k in zip(scored, keep):
        drop = torch.argsort(scores, stable=True)[: cg.units - k]
        if len(drop) == 0:
            continue
        idxs = torch.cat([drop + g * cg.units for g in range(cg.ch_groups)]).sort().values.tolist()
        group = DG.get_pruning_group(cg.root, cg.handler, idxs)
        if DG.check_pruning_group(group):
            group.prune()
        else:
            warnings.warn(f"layer {cg.root_name} is left unpruned: removing {len(idxs)} of its channels would "
                          "empty a coupled layer", stacklevel=2)
    after = layer_widths(model)
    layers = [{"name": n, "channels_before": c, "channels_after": after[n]} for n, c in before.items()]
    history = [[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in DG.pruning_history()]
    return PruneResult(history=history, layers=layers, skipped=skipped)

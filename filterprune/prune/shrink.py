"""Score every group, allocate, and physically remove the chosen channels through the dependency graph."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..criteria import Criterion, PruneContext
from ..errors import RunError
from .graph import build_graph, channel_groups, classifier_layers
from .plan import PlanConfig, allocate
from .safety import breaking_groups, forward_failure, restore


@dataclass
class PruneResult:
    history: list  # torch-pruning pruning history, JSON-safe: [[layer name, is_out, [idxs]], ...]
    layers: list[dict] = field(default_factory=list)  # name, channels_before, channels_after
    skipped: list[str] = field(default_factory=list)  # groups the criterion declined to score
    unprunable: dict[str, str] = field(default_factory=dict)  # group root -> why removing it breaks the model


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
    """Prune ``model`` in place; returns the replayable history and per-layer widths.

    Groups whose removal leaves a model that no longer runs (see ``safety``) are left whole and listed
    in ``unprunable`` with the reason; if the rest still fails, RunError names the failing layer.
    """
    before = layer_widths(model)
    pristine = copy.deepcopy(model)
    was_training = model.training
    out_shape = model.eval()(ctx.example_inputs).shape
    model.train(was_training)
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
    decisions = {}  # root name -> (handler, channel indices to remove)
    for (cg, scores), k in zip(scored, keep):
        drop = torch.argsort(scores, stable=True)[: cg.units - k]
        if len(drop):
            idxs = torch.cat([drop + g * cg.units for g in range(cg.ch_groups)]).sort().values.tolist()
            decisions[cg.root_name] = (cg.handler, idxs)
    failure = _apply(DG, model, decisions) or forward_failure(model, ctx.example_inputs, out_shape)
    unprunable = {}
    if failure:
        def trial(names: list[str]) -> str | None:
            trial_model = copy.deepcopy(pristine)
            trial_DG = build_graph(trial_model, ctx.example_inputs)
            return (_apply(trial_DG, trial_model, {n: decisions[n] for n in names})
                    or forward_failure(trial_model, ctx.example_inputs, out_shape))

        unprunable = breaking_groups(trial, list(decisions), known=failure)
        restore(model, pristine)
        DG = build_graph(model, ctx.example_inputs)
        failure = (_apply(DG, model, {n: d for n, d in decisions.items() if n not in unprunable})
                   or forward_failure(model, ctx.example_inputs, out_shape))
        if failure:
            restore(model, pristine)
            raise RunError(f"torch-pruning cannot prune {type(model).__name__}: the pruned model fails ({failure})")
    after = layer_widths(model)
    layers = [{"name": n, "channels_before": c, "channels_after": after[n]} for n, c in before.items()]
    history = [[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in DG.pruning_history()]
    return PruneResult(history=history, layers=layers, skipped=skipped, unprunable=unprunable)


def _apply(DG, model: nn.Module, decisions: dict) -> str | None:
    """Remove the chosen channels group by group; a reason naming the group if torch-pruning raises."""
    modules = dict(model.named_modules())
    for name, (handler, idxs) in decisions.items():
        group = DG.get_pruning_group(modules[name], handler, idxs)
        try:
            if DG.check_pruning_group(group):
                group.prune()
        except Exception as e:
            return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]} while pruning '{name}'"
    return None

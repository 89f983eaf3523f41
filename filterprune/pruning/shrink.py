"""Score groups, allocate, and physically remove the chosen channels through the dependency graph.

Two orders: a plain criterion scores every group on the dense model, then allocation decides all kept
counts at once; a ``sequential`` criterion (greedy) scores and prunes group by group in execution order,
so each group is measured in the network as pruned so far.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .. import limits
from ..criteria import Criterion, PruneContext
from ..errors import RunError, UsageError
from ..example import call, structure
from ..handed import check_untied
from ..log import say
from ..targets import Macs, Target
from ..tracing import eval_mode
from . import align
from .graph import (
    build_graph,
    channel_groups,
    execution_order,
    output_layers,
    pruning_group,
    resolve_ignored,
)
from .latency_target import target_plan
from .plan import PlanConfig, allocate
from .safety import breaking_groups, forward_failure, restore
from .target import CostModel, solve_sparsity


@dataclass
class PruneResult:
    history: list  # torch-pruning pruning history, JSON-safe: [[layer name, is_out, [idxs]], ...]
    layers: list[dict] = field(default_factory=list)  # name, channels_before, channels_after
    skipped: list[str] = field(default_factory=list)  # groups the criterion declined to score
    sparsity: float = 0.0  # the channel sparsity applied (found by the search under --target-macs)
    units: dict[str, int] = field(default_factory=dict)  # root layer -> units before this prune
    unprunable: dict[str, str] = field(default_factory=dict)  # group root -> why it was left whole
    latency_target: dict | None = (
        None  # --target-speedup/--target-latency: asked vs measured, widths (per step)
    )


def layer_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every conv and linear layer, by name."""
    return {
        n: (m.out_channels if isinstance(m, nn.modules.conv._ConvNd) else m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    }


def _unit_scores(cg, raw: torch.Tensor) -> torch.Tensor:
    raw = raw.detach().float().cpu().reshape(-1)
    if len(raw) != cg.channels:
        raise RunError(f"criterion returned {len(raw)} scores for {cg.root_name} with {cg.channels} channels")
    if not torch.isfinite(raw).all():
        raise RunError(f"criterion produced non-finite scores for {cg.root_name}")
    return raw.view(cg.ch_groups, -1).mean(0) if cg.ch_groups > 1 else raw


def _decision(cg, scores: torch.Tensor, keep: int) -> tuple | None:
    """(handler, channel indices to remove) keeping the ``keep`` best-scored units; None: nothing to
    remove."""
    drop = torch.argsort(scores, stable=True)[: cg.units - keep]
    if len(drop) == 0:
        return None
    return cg.handler, torch.cat([drop + g * cg.units for g in range(cg.ch_groups)]).sort().values.tolist()


def _remove(DG, cg, scores: torch.Tensor, keep: int) -> tuple | None:
    decision = _decision(cg, scores, keep)
    if decision is not None:
        group = pruning_group(DG, cg.root, *decision)
        if DG.check_pruning_group(group):
            group.prune()
    return decision


def _sequential_decisions(
    DG, criterion: Criterion, groups: list, keep: list[int], skipped: list[str]
) -> dict:
    """Greedy's order: each group scored in the network as pruned so far and pruned at once, in execution
    order. A group's indices are of its own root's output channels, which no other group changes, so the
    decisions replay on the unpruned model."""
    decisions = {}
    for cg, k in zip(groups, keep):
        raw = criterion.score(DG.get_pruning_group(cg.root, cg.handler, list(range(cg.channels))))
        if raw is None:
            skipped.append(cg.root_name)
        else:
            decisions[cg.root_name] = _remove(DG, cg, _unit_scores(cg, raw), k)
    return decisions


def _hardware_aware(model, ctx, plan: PlanConfig, groups, keep: list[int]) -> list[int]:
    """``round_to='auto'``: the kept counts re-chosen among widths measured fast on the target runtime, at
    the target precision (the kernels the deployment runs) and threads."""
    import math

    sites = align.conv_sites(model, ctx.example_inputs, groups)
    table = align.LatencyTable(plan.target_runtime, plan.target_batch, plan.threads, plan.target_precision)
    channels = [cg.channels for cg in groups]
    floors = [max(1, math.ceil(plan.layer_floor * c - 1e-9)) for c in channels]
    kept = align.hardware_aware(
        [k * cg.ch_groups for k, cg in zip(keep, groups)],
        channels,
        [cg.ch_groups == 1 for cg in groups],
        sites,
        floors,
        table,
        log=say,
    )
    return [k // cg.ch_groups for k, cg in zip(kept, groups)]


def _latency_targeted(model, ctx, plan: PlanConfig, scored, totals, num_classes: int):
    """Kept units per group from measured latencies on the target runtime (prune/latency_target.py)."""
    names = [cg.root_name for cg, _ in scored]
    layers = [cg.layers or cg.root_name for cg, _ in scored]
    scores = {cg.root_name: s for cg, s in scored}
    pristine = copy.deepcopy(model)

    def build(keep: list[int]) -> nn.Module:
        net = copy.deepcopy(pristine)
        DG = build_graph(net, ctx.example_inputs, ctx.deploy)
        fresh = {
            cg.root_name: cg
            for cg in channel_groups(DG, [*output_layers(DG), *resolve_ignored(net, ctx.ignored_layers)])
        }
        for name, k in zip(names, keep):
            _remove(DG, fresh[name], scores[name], k)
        return net.eval()

    def allocate_at(sparsity: float) -> list[int]:
        with warnings.catch_warnings():  # the search's tight trials meet the floors; the floors are the point
            warnings.simplefilter("ignore")
            return allocate([s for _, s in scored], plan.at(sparsity), totals, layers)

    return target_plan(
        model, ctx, plan, [cg for cg, _ in scored], [s for _, s in scored], totals, build, allocate_at
    )


@torch.no_grad()
def prune(
    model: nn.Module,
    criterion: Criterion,
    plan: PlanConfig,
    ctx: PruneContext,
    num_classes: int,
    dense_units: dict[str, int] | None = None,
    dense_macs: int | None = None,
) -> PruneResult:
    """Prune ``model`` in place; returns the replayable history and per-layer widths.

    ``dense_units`` / ``dense_macs`` describe the unpruned network when ``model`` is already pruned
    (iterative steps), so sparsity, floors and --target-macs stay relative to the dense model.
    Groups whose removal leaves a model that no longer runs (see ``safety``) are left whole and listed
    in ``unprunable`` with the reason; if the rest still fails, RunError names the failing layer.
    """
    check_untied(model)  # before anything is cut
    if _measured(plan) or plan.round_to == "auto":  # latencies are measured at target_batch
        largest, _ = limits.activation_sizes(model, tuple(ctx.example_inputs.shape[1:]))
        limits.check_sizes(0, largest, 0, plan.target_batch)
    before = layer_widths(model)
    pristine = copy.deepcopy(model)
    with eval_mode(model):
        out_shape = _expected(call(_deployed(model, ctx), ctx.example_inputs))
    DG = build_graph(model, ctx.example_inputs, ctx.deploy)
    groups = channel_groups(DG, [*output_layers(DG), *resolve_ignored(model, ctx.ignored_layers)])
    opaque = {cg.root_name: cg.opaque for cg in groups if cg.opaque}
    groups = [cg for cg in groups if not cg.opaque]
    _prepare(model, criterion, plan, ctx)
    scored, skipped = _scored(model, criterion, groups, ctx)
    units = {cg.root_name: cg.units for cg, _ in scored}
    totals = [(dense_units or units).get(cg.root_name, cg.units) for cg, _ in scored]
    plan, keep, target = _kept_units(model, ctx, plan, scored, totals, num_classes, dense_macs)
    DG, decisions = _decisions(DG, model, pristine, criterion, ctx, scored, keep, skipped)
    DG, unprunable = _apply_safely(
        DG, model, pristine, {n: d for n, d in decisions.items() if d}, ctx, out_shape
    )
    after = layer_widths(model)
    layers = [{"name": n, "channels_before": c, "channels_after": after[n]} for n, c in before.items()]
    history = [[name, bool(is_out), [int(i) for i in idxs]] for name, is_out, idxs in DG.pruning_history()]
    if target:
        plan = plan.at(1 - sum(after[n] for n in units) / max(1, sum(before[n] for n in units)))
    return PruneResult(
        history=history,
        layers=layers,
        skipped=skipped,
        sparsity=plan.sparsity,
        units=units,
        unprunable={**opaque, **unprunable},
        latency_target=target,
    )


def _deployed(model: nn.Module, ctx: PruneContext) -> nn.Module:
    """What must keep returning what it returned: the network as deployed (``ctx.deploy``), else the
    model. A fresh wrapper is in training mode; it takes the model's, which a run in eval mode gives back
    to the wrapper and so to the model."""
    net = ctx.deploy(model) if ctx.deploy else model
    net.training = model.training
    return net


def _expected(out) -> tuple:
    """What the pruned model must still return: a tensor's shape, as always for a classifier; the
    structure of any other output (``example.structure``)."""
    return tuple(out.shape) if isinstance(out, torch.Tensor) and out.ndim == 2 else structure(out)


def _measured(plan: PlanConfig) -> bool:
    """Whether the plan's channel counts come from latencies measured on the target runtime (its target
    is always a ``Target``: ``PlanConfig`` makes a float a ``Sparsity``)."""
    return isinstance(plan.target, Target) and plan.target.measured


def _prepare(model: nn.Module, criterion: Criterion, plan: PlanConfig, ctx: PruneContext) -> None:
    """Check that the criterion can score ``model`` at the plan's scope, and let it prepare (gradients on)."""
    criterion.check(model)
    if criterion.sequential and plan.scope == "global":
        raise UsageError(
            f"criterion '{criterion.name}' measures each layer in the network pruned so far, so its "
            "scores are not comparable across layers: use --scope layerwise"
        )
    with torch.enable_grad():
        criterion.prepare(model, ctx)


def _kept_units(
    model: nn.Module,
    ctx: PruneContext,
    plan: PlanConfig,
    scored: list,
    totals: list[int],
    num_classes: int,
    dense_macs: int | None,
) -> tuple[PlanConfig, list[int], dict | None]:
    """Kept units per scored group; the plan with a MAC target solved into the sparsity whose allocation
    meets it; and, for a measured target, what its latency search found."""
    if isinstance(plan.target, Macs):
        cost = CostModel(model, ctx.example_inputs, scored)
        plan = plan.at(solve_sparsity(cost, plan, totals, plan.target.value * (dense_macs or cost.current)))
    target = None
    if _measured(plan):  # counts from measured latency; a sequential criterion then picks the channels
        planned, target = _latency_targeted(model, ctx, plan, scored, totals, num_classes)
        if target:
            return plan, planned, target
    names = [cg.layers or cg.root_name for cg, _ in scored]
    keep = allocate([s for _, s in scored], plan, totals, names)  # layerwise if sequential
    if plan.round_to == "auto":
        keep = _hardware_aware(model, ctx, plan, [cg for cg, _ in scored], keep)
    return plan, keep, target


def _decisions(
    DG, model: nn.Module, pristine: nn.Module, criterion: Criterion, ctx: PruneContext, scored, keep, skipped
) -> tuple:
    """(graph, group root -> (handler, channels to remove) or None). A sequential criterion scores each
    group in the network pruned so far, then the model is restored and a fresh graph built, so its
    decisions apply as every criterion's do."""
    if criterion.sequential:
        decisions = _sequential_decisions(DG, criterion, [cg for cg, _ in scored], keep, skipped)
        restore(model, pristine)
        return build_graph(model, ctx.example_inputs, ctx.deploy), decisions
    return DG, {cg.root_name: _decision(cg, scores, k) for (cg, scores), k in zip(scored, keep)}


def _scored(
    model: nn.Module, criterion: Criterion, groups: list, ctx: PruneContext
) -> tuple[list, list[str]]:
    """(group, per-unit scores) for every group the criterion scores, and the names of those it skips. A
    sequential criterion scores later, in the network pruned so far: its groups come in execution order."""
    if criterion.sequential:
        order = execution_order(model, ctx.example_inputs)
        groups = sorted(
            groups,
            key=lambda cg: min(
                order.get(id(d.target.module), len(order))
                for d, _ in cg.group
                if d.handler.__name__ == "prune_out_channels"
            ),
        )
        return [(cg, torch.zeros(cg.units)) for cg in groups], []  # layerwise counts do not depend on scores
    scored, skipped = [], []
    for cg in groups:
        raw = criterion.score(cg.group)
        if raw is None:
            skipped.append(cg.root_name)
        else:
            scored.append((cg, _unit_scores(cg, raw)))
    return scored, skipped


def _apply_safely(DG, model: nn.Module, pristine: nn.Module, decisions: dict, ctx, out_shape):
    """Apply all decisions; if the pruned model breaks, find the groups responsible, leave them whole,
    and apply the rest. Returns the graph of the final model and {group: why it was left whole}."""
    failure = _apply(DG, model, decisions) or forward_failure(
        _deployed(model, ctx), ctx.example_inputs, out_shape
    )
    if not failure:
        return DG, {}

    def trial(names: list[str]) -> str | None:
        trial_model = copy.deepcopy(pristine)
        trial_DG = build_graph(trial_model, ctx.example_inputs, ctx.deploy)
        return _apply(trial_DG, trial_model, {n: decisions[n] for n in names}) or forward_failure(
            _deployed(trial_model, ctx), ctx.example_inputs, out_shape
        )

    unprunable = {
        name: f"pruning it breaks the model ({why})"
        for name, why in breaking_groups(trial, list(decisions), known=failure).items()
    }
    restore(model, pristine)
    DG = build_graph(model, ctx.example_inputs, ctx.deploy)
    failure = _apply(
        DG, model, {n: d for n, d in decisions.items() if n not in unprunable}
    ) or forward_failure(_deployed(model, ctx), ctx.example_inputs, out_shape)
    if failure:
        restore(model, pristine)
        raise RunError(
            f"torch-pruning cannot prune {type(model).__name__}: the pruned model fails ({failure})"
        )
    return DG, unprunable


def _apply(DG, model: nn.Module, decisions: dict) -> str | None:
    """Remove the chosen channels group by group; a reason naming the group if torch-pruning raises."""
    modules = dict(model.named_modules())
    for name, (handler, idxs) in decisions.items():
        group = pruning_group(DG, modules[name], handler, idxs)
        try:
            if DG.check_pruning_group(group):
                group.prune()
            else:
                warnings.warn(
                    f"layer {name} is left unpruned: removing {len(idxs)} of its channels would "
                    "empty a coupled layer",
                    stacklevel=2,
                )
        except Exception as e:
            return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]} while pruning '{name}'"
    return None

"""``--steps K``: reach the pruning target in K prune -> finetune cycles instead of one cut.

Step i prunes to the i-th point of a linear schedule — channel sparsity s*i/K, or MACs 1-(1-F)*i/K of
dense under ``--target-macs F`` — always measured against the *dense* network (its widths, floors and
MACs), so the last step lands exactly where a one-shot prune would, and finetuning between steps lets
the network recover before the next cut. The caller finetunes after the last step as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch.nn as nn

from ..criteria import Criterion, PruneContext
from ..errors import UsageError
from .plan import PlanConfig
from .shrink import PruneResult, layer_widths, prune
from .target import layer_costs


def step_plans(plan: PlanConfig, steps: int) -> list[PlanConfig]:
    """The K intermediate targets (each target kind splits itself), the last one equal to ``plan``."""
    if steps < 1:
        raise UsageError(f"steps must be >= 1, got {steps}", ("steps",))
    return [replace(plan, target=t) for t in plan.target.steps(steps)]


def prune_in_steps(
    model: nn.Module,
    criterion: Criterion,
    plan: PlanConfig,
    ctx: PruneContext,
    num_classes: int,
    steps: int = 1,
    finetune: Callable[[nn.Module, int], None] | None = None,
) -> PruneResult:
    """Prune ``model`` in place in ``steps`` cycles; ``finetune(model, i)`` runs after every step but
    the last.

    The returned history is the concatenation of the steps' histories: replayed in order on the dense
    model it rebuilds the final network.
    """
    plans = step_plans(plan, steps)
    before = layer_widths(model)
    dense_macs = sum(c.macs() for c in layer_costs(model, ctx.example_inputs).values())
    dense_units: dict[str, int] | None = None
    history, skipped, unprunable, targets = [], [], {}, []
    for i, step_plan in enumerate(plans, 1):
        res = prune(model, criterion, step_plan, ctx, num_classes, dense_units, dense_macs)
        dense_units = dense_units or res.units
        history += res.history
        skipped += [s for s in res.skipped if s not in skipped]
        unprunable.update(res.unprunable)
        targets += [res.latency_target] if res.latency_target else []
        if i < steps and finetune is not None:
            finetune(model, i)
    assert dense_units is not None  # step_plans gives at least one step
    after = layer_widths(model)
    layers = [{"name": n, "channels_before": c, "channels_after": after[n]} for n, c in before.items()]
    if (
        targets
    ):  # the steps' sparsities are relative to the network of each step: report the dense-relative one
        kept = sum(after[n] for n in dense_units) / max(1, sum(before[n] for n in dense_units))
        res = replace(res, sparsity=1 - kept)
    return PruneResult(
        history=history,
        layers=layers,
        skipped=skipped,
        sparsity=res.sparsity,
        units=dense_units,
        unprunable=unprunable,
        latency_target=(targets[-1] if len(targets) == 1 else {"steps": targets}) if targets else None,
    )

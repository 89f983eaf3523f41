"""The masked-but-dense control: the seed studies' setting, kept beside the shrunk model.

The mask's weights are zeroed in a copy of the dense model, which is finetuned exactly like the shrunk
model but with the mask held (``held``). Its MACs are the dense MACs (zeros are still multiplied), its
seed FLOPs are density-weighted as the seed tables print them, and its latency should match the dense
model's: the difference to the shrunk model is the toolkit's point.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..benchmarking import counting
from ..pruning.shrink import PruneResult, layer_widths
from ..reporting.schema import Masked
from ..train import evaluate, train
from . import MaskConfig
from .schedule import held
from .weights import Masks, apply_masks, density


@dataclass
class MaskedModel:
    model: nn.Module
    accuracy: dict | None  # None on the ranks but 0 of a --distributed run (rank 0 alone evaluates)
    history: list = field(default_factory=list)


def mask_in_place(model: nn.Module, criterion, ctx) -> PruneResult:
    """``--mode masked``: build the criterion's mask and zero its weights, keeping every channel."""
    criterion.check(model)
    with torch.enable_grad():
        criterion.prepare(model, ctx)
    apply_masks(model, criterion.masks)
    widths = layer_widths(model)
    return PruneResult(
        history=[], layers=[{"name": n, "channels_before": c, "channels_after": c} for n, c in widths.items()]
    )


def finetune(
    model: nn.Module,
    masks: Masks | None,
    ft,
    data,
    device,
    desc: str = "finetune",
    teacher: nn.Module | None = None,
) -> list[dict]:
    """Finetune in place (distilling from ``teacher`` if given); with ``masks`` the masked weights stay
    exactly zero."""
    if not ft.epochs:
        return []
    with held(model, masks):
        return train(model, data, ft, device, desc=desc, teacher=teacher)


def masked_control(
    dense: nn.Module, masks: Masks, ft, data, device, teacher: nn.Module | None = None
) -> MaskedModel:
    """The dense model with the mask applied, finetuned with it held (like the shrunk model, from the
    same teacher), evaluated on the test split."""
    model = apply_masks(copy.deepcopy(dense), masks).to(device)
    history = finetune(model, masks, ft, data, device, desc="finetune masked", teacher=teacher)
    return MaskedModel(model, evaluate(model, data, device), history)


def section(
    masked: MaskedModel, masks: Masks, mask_cfg: MaskConfig, input_shape, dense_cost: counting.Cost
) -> Masked:
    """report.json's ``masked``: stored params, non-zero params, real MACs, seed FLOPs weighted by the
    mask's density and their fraction of the dense seed FLOPs (the seed tables' "FLOP sparsity")."""
    cost = counting.count(masked.model, input_shape, masks)
    zeros = sum(int((~m).sum()) for m in masks.values())
    acc = masked.accuracy
    assert acc is not None  # rank 0 writes the report, and rank 0 evaluated
    return {
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "nonzero_params": cost.params - zeros,
        "flop_fraction": cost.flops / dense_cost.flops,
        "weight_density": density(masks),
        "compression": mask_cfg.compression,  # the mask's settings (MaskConfig.to_dict but imp_train)
        "density": mask_cfg.density,
        "scope": mask_cfg.scope,
        "reduce": mask_cfg.reduce,
        "imp_iterations": mask_cfg.imp_iterations,
        "synflow_rounds": mask_cfg.synflow_rounds,
        "accuracy": acc["top1"],
        "top5": acc["top5"],
        "finetune_history": masked.history,
    }

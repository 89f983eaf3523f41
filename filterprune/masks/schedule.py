"""From per-weight scores to a mask: one-shot, iterative (SynFlow), and Iterative Magnitude Pruning.

All scoring happens on a scratch copy, so the model being pruned is never touched. On that copy the
masked weights are zeroed, which makes the scores the reference's: its layers compute with w * m, and a
score that reads w * dL/d(w*m) (SNIP, SynFlow) or |w * m| (IMP) is then exactly our w_eff * dL/dw_eff.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
from torch.nn.utils import prune as torch_prune

from ..data import make_loader
from ..errors import UsageError
from ..train import train
from .weights import Masks, apply_masks, full_masks, mask_at, prunable

Scorer = Callable[[nn.Module, dict, object], dict]  # (scratch model, {name: layer}, ctx) -> {name: scores}


def calibration_batches(ctx, method: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``ctx.calib_batches`` training batches (no augmentation, seeded shuffle) on ``ctx.device``."""
    if ctx.data is None:
        raise UsageError(f"criterion {method!r} scores weights on data; none was given")
    loader = make_loader(ctx.data, "train", ctx.batch_size, augment=False, shuffle=True, seed=ctx.seed)
    for i, (x, y) in enumerate(loader):
        if i == ctx.calib_batches:
            break
        yield x.to(ctx.device), y.to(ctx.device)


def iterative(
    model: nn.Module, scorer: Scorer, dens: float, scope: str, rounds: int, ctx
) -> tuple[Masks, dict]:
    """Score, mask, repeat: round k keeps density d^((k+1)/rounds) (the reference's exponential schedule;
    one round is one-shot pruning). Returns the final mask and the last round's scores."""
    scratch = copy.deepcopy(model).to(ctx.device).eval()
    layers = prunable(scratch)
    masks, scores = full_masks(scratch), {}
    for k in range(rounds):
        apply_masks(scratch, masks)
        with torch.enable_grad():
            scores = {n: s.detach().cpu() for n, s in scorer(scratch, layers, ctx).items()}
        masks = mask_at(scores, dens ** ((k + 1) / rounds), scope, previous=masks)
    return masks, scores


def imp(
    model: nn.Module,
    dens: float,
    scope: str,
    iterations: int,
    train_cfg,
    ctx,
    train_fn: Callable | None = None,
) -> tuple[Masks, dict]:
    """Iterative Magnitude Pruning (Frankle & Carbin; the seed study's IMP): train with the current mask,
    prune by |w| to density d^((i+1)/N), rewind every weight and buffer to the starting point, repeat.

    The starting point is the model handed in (the dense model the pipeline prunes: the random
    initialisation with ``--epochs 0``, else the trained baseline). Scores are |w * m|, so a weight once
    pruned stays pruned (the reference scores the raw, unmasked |w| and can revive weights)."""
    train_fn = train_fn or train
    if ctx.data is None:
        raise UsageError("criterion 'imp' trains between pruning rounds and needs data; none was given")
    start = copy.deepcopy(model.state_dict())
    net = copy.deepcopy(model)
    masks, scores = full_masks(net), {}
    for i in range(iterations):
        with held(net, masks):
            train_fn(net, ctx.data, train_cfg, ctx.device, desc=f"imp {i + 1}/{iterations}")
        scores = {
            n: (m.weight.detach() * masks[n].to(m.weight.device)).abs().cpu()
            for n, m in prunable(net).items()
        }
        masks = mask_at(scores, dens ** ((i + 1) / iterations), scope, previous=masks)
        net.load_state_dict(start)
        apply_masks(net, masks)
    return masks, scores


class held:
    """Context manager: train ``model`` with ``masks`` enforced (w = w_orig * m on every forward, so the
    masked weights get no gradient), then fold the masks into plain weights again. ``masks=None``: no-op."""

    def __init__(self, model: nn.Module, masks: Masks | None):
        self.model, self.masks = model, masks

    def __enter__(self):
        if self.masks:
            for name, m in prunable(self.model).items():
                torch_prune.custom_from_mask(m, "weight", self.masks[name].to(m.weight.device))
        return self.model

    def __exit__(self, *exc):
        if self.masks:
            for m in self.model.modules():
                if hasattr(m, "weight_mask"):
                    torch_prune.remove(m, "weight")
        return False

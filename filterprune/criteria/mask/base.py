"""``MaskCriterion``: the adapter that lets an unstructured method act as a channel criterion.

``prepare`` builds the method's mask at compression c (``ctx.mask``, a ``MaskConfig``); ``score`` reduces
the root layer's mask to one saliency per output channel.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ...masks import MaskConfig
from ...masks.saliency import channel_saliency
from ...masks.schedule import iterative
from ...masks.weights import Masks
from ..base import Criterion, root_of


class MaskCriterion(Criterion):
    default_scope = "global"  # the channel threshold follows the mask's own allocation across layers
    reads: tuple[str, ...] = ("compression", "mask_scope", "mask_reduce")
    rounds_field: str | None = None  # MaskConfig field holding the number of scoring rounds (SynFlow)
    masks: Masks | None = None
    dense_masks: Masks | None = None  # the mask on the unpruned model (with --steps, later steps re-mask)

    def weight_scores(self, model: nn.Module, layers: dict[str, nn.Module], ctx) -> dict[str, torch.Tensor]:
        """One score per weight of every layer in ``layers`` (on a scratch copy, masked weights at 0)."""
        raise NotImplementedError

    def make_mask(self, model: nn.Module, ctx, cfg: MaskConfig) -> tuple[Masks, dict]:
        rounds = getattr(cfg, self.rounds_field) if self.rounds_field else 1
        return iterative(model, self.weight_scores, cfg.density, cfg.scope, rounds, ctx)

    def prepare(self, model, ctx):
        self.config = ctx.mask if ctx.mask is not None else MaskConfig(compression=1.0)
        self.masks, self.weight_score = self.make_mask(model, ctx, self.config)
        if self.dense_masks is None:  # the first call sees the dense model: the masked control's mask
            self.dense_masks = self.masks
        self._names = {id(m): n for n, m in model.named_modules()}

    def score(self, group):
        module, idxs = root_of(group)
        name = self._names.get(id(module))
        if name not in self.masks:
            return None
        return channel_saliency(self.masks[name], self.weight_score[name], module, self.config.reduce)[idxs]

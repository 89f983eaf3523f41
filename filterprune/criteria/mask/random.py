"""``rand`` — random unstructured mask (scores ~ N(0, 1), seeded), the seed studies' Rand; unlike the
structured ``random`` the channel choice goes through a mask, so filters differ only by chance in kept
density."""

import torch

from .base import MaskCriterion


class Rand(MaskCriterion):
    name = "rand"

    def weight_scores(self, model, layers, ctx):
        gen = torch.Generator().manual_seed(ctx.seed)
        return {n: torch.randn(m.weight.shape, generator=gen) for n, m in layers.items()}

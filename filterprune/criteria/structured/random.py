"""``random`` — uniformly random channels: the control every comparison needs."""

import torch

from ..base import Criterion


class Random(Criterion):
    name = "random"

    def prepare(self, model, ctx):
        self.gen = torch.Generator().manual_seed(ctx.seed)

    def score(self, group):
        return torch.rand(len(group[0].idxs), generator=self.gen)

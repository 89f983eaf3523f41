"""``l1`` — Li et al. 2017: the L1 norm of each filter of the pruned conv itself (its own weights only)."""

import torch

from ..base import Criterion, root_of


class L1(Criterion):
    name = "l1"

    def score(self, group):
        module, idxs = root_of(group)
        w = module.weight.detach()
        if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            w = w.transpose(0, 1)
        return w[idxs].abs().flatten(1).sum(1)

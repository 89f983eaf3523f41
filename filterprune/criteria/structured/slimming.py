"""``slimming`` — Liu et al. 2017 network slimming: |gamma| of the BatchNorm that follows the conv.

Scaled by a global threshold across layers by default (the paper's setting), so |gamma| values are
compared network-wide; sparsity training (``--sparsity-reg``) pushes unimportant gammas to zero first.
Groups without a BatchNorm are left unpruned; a network without any BatchNorm is refused.
"""

import torch
import torch.nn as nn

from ...errors import UsageError
from ..base import Criterion


class Slimming(Criterion):
    name = "slimming"
    default_scope = "global"

    def check(self, model):
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine for m in model.modules()):
            raise UsageError(
                f"criterion 'slimming' needs BatchNorm layers; {type(model).__name__} has none "
                "(use l1 or magnitude)"
            )

    def score(self, group):
        n = len(group[0].idxs)
        total, found = torch.zeros(n), 0
        for i, (dep, idxs) in enumerate(group):
            m = dep.target.module
            if (
                isinstance(m, nn.modules.batchnorm._BatchNorm)
                and m.affine
                and dep.handler.__name__ == "prune_out_channels"
            ):
                total.index_add_(
                    0, torch.as_tensor(group[i].root_idxs), m.weight.detach()[idxs].abs().float()
                )
                found += 1
        return total / found if found else None


def small_gamma_share(model: nn.Module, threshold: float = 1e-2) -> float:
    """Fraction of BatchNorm scales with |gamma| < threshold: what sparsity training is meant to raise."""
    gammas = [
        m.weight.detach().abs().flatten()
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine
    ]
    if not gammas:
        return 0.0
    return float((torch.cat(gammas) < threshold).float().mean())

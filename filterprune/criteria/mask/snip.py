"""``snip`` — Lee et al. 2019 connection sensitivity |g * w| on data (SynFlow reference: the gradient of
the summed per-batch cross-entropy over the calibration batches, eval mode, normalised to sum 1)."""

import torch.nn.functional as F

from ...masks.schedule import calibration_batches
from .base import MaskCriterion


class Snip(MaskCriterion):
    reads = (*MaskCriterion.reads, "calib_batches")
    name = "snip"

    def weight_scores(self, model, layers, ctx):
        model.zero_grad(set_to_none=True)
        for x, y in calibration_batches(ctx, self.name):
            F.cross_entropy(model(x), y).backward()
        scores = {n: (m.weight.grad * m.weight).detach().abs() for n, m in layers.items()}
        norm = sum(s.sum() for s in scores.values())
        return {n: s / norm for n, s in scores.items()}

"""``grasp`` — Wang et al. 2020 Gradient Signal Preservation. GraSP's score is -w * Hg (computed with
logits / 200, the reference temperature) and it removes the *largest*; as a keep-score that is w * Hg,
which is what the SynFlow reference ranks (normalised by |sum| + 1e-10). Hg is an exact Hessian-vector
product: g is the stopped gradient summed over the calibration batches."""

import torch
import torch.nn.functional as F

from ...masks.schedule import calibration_batches
from .base import MaskCriterion

TEMPERATURE = 200
EPS = 1e-10


class Grasp(MaskCriterion):
    reads = (*MaskCriterion.reads, "calib_batches")
    name = "grasp"

    def weight_scores(self, model, layers, ctx):
        params = [m.weight for m in layers.values()]
        batches = list(calibration_batches(ctx, self.name))
        stopped = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            grads = torch.autograd.grad(F.cross_entropy(model(x) / TEMPERATURE, y), params)
            stopped = [s + g for s, g in zip(stopped, grads)]
        hg = [torch.zeros_like(p) for p in params]
        for x, y in batches:
            grads = torch.autograd.grad(F.cross_entropy(model(x) / TEMPERATURE, y), params, create_graph=True)
            z = sum((g * s).sum() for g, s in zip(grads, stopped))
            hg = [a + b for a, b in zip(hg, torch.autograd.grad(z, params))]
        scores = {n: (h * p).detach() for n, h, p in zip(layers, hg, params)}
        norm = sum(s.sum() for s in scores.values()).abs() + EPS
        return {n: s / norm for n, s in scores.items()}

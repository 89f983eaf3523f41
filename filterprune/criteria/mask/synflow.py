"""``synflow`` — Tanaka et al. 2020 Iterative Synaptic Flow Pruning, data-free: every parameter and
buffer replaced by its absolute value, R = sum of the network's output on one all-ones input, score
|w * dR/dw|, re-scored and re-masked over 100 rounds on the exponential schedule d^(k/100). Computed in
float64 (the reference's float32 can overflow on deep nets; the ranking is otherwise the same)."""

import torch

from .base import MaskCriterion


class SynFlow(MaskCriterion):
    name = "synflow"
    rounds_field = "synflow_rounds"

    def weight_scores(self, model, layers, ctx):
        model.double()
        with torch.no_grad():
            for t in model.state_dict().values():
                if t.is_floating_point():
                    t.abs_()
        x = torch.ones(1, *ctx.example_inputs.shape[1:], dtype=torch.float64, device=ctx.device)
        params = [m.weight for m in layers.values()]
        grads = torch.autograd.grad(model(x).sum(), params)
        return {n: (g * p).detach().abs() for n, g, p in zip(layers, grads, params)}

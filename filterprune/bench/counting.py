"""Parameter, MAC and seed-FLOP counts from one traced forward pass.

MACs: multiply-accumulates of every conv and linear layer (what thop/fvcore call "FLOPs").
Seed FLOPs: the SNIP/GraSP/SynFlow/IMP seed studies' convention, weight MACs + bias adds; their
VGG16-CIFAR (``vgg16-lottery``) totals exactly 313,478,154. Normalisation, activations and pooling are
not counted by either.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    flops: int  # seed convention

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def count(model: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Costs for ONE image of shape (C, H, W) (or features for an MLP)."""
    macs, bias_adds = 0, 0

    def hook(m, inputs, out):
        nonlocal macs, bias_adds
        per_out = m.weight.shape[1] * math.prod(m.weight.shape[2:]) if isinstance(m, nn.modules.conv._ConvNd) \
            else m.in_features
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            per_out = m.weight.shape[0] // m.groups * math.prod(m.weight.shape[2:])
        n_out = out.numel() // out.shape[0]
        macs += n_out * per_out
        if m.bias is not None:
            bias_adds += n_out

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    was_training = model.training
    device = next(model.parameters()).device
    try:
        model.eval()
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    return Cost(params=params, macs=int(macs), flops=int(macs + bias_adds))

"""Parameter, MAC and seed-FLOP counts from one traced forward pass.

MACs: multiply-accumulates of every conv and linear layer (what thop/fvcore call "FLOPs").
Seed FLOPs: the SNIP/GraSP/SynFlow/IMP seed studies' convention (SynFlow's ``metrics.flop``): weight
MACs + bias adds + the affine scale and shift of BatchNorm (2 per output element); their VGG16-CIFAR
(``vgg16-lottery``, no BN) totals exactly 313,478,154. Given a mask, each layer's weight MACs count
times the fraction of its weights the mask keeps: the seed tables' "FLOP sparsity" numerator.
Activations and pooling are counted by neither.
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
def count(model: nn.Module, input_shape: tuple[int, ...], masks: dict | None = None) -> Cost:
    """Costs for ONE image of shape (C, H, W) (or features for an MLP). ``masks``: layer name -> bool
    weight mask, for the density-weighted seed FLOPs of a masked model (MACs stay the real ones)."""
    macs, bias_adds, weight_flops = 0, 0, 0.0
    names = {m: n for n, m in model.named_modules()}

    def bn_hook(m, inputs, out):
        nonlocal bias_adds
        if m.affine:
            bias_adds += 2 * (out.numel() // out.shape[0])

    def hook(m, inputs, out):
        nonlocal macs, bias_adds, weight_flops
        per_out = m.weight.shape[1] * math.prod(m.weight.shape[2:]) if isinstance(m, nn.modules.conv._ConvNd) \
            else m.in_features
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            per_out = m.weight.shape[0] // m.groups * math.prod(m.weight.shape[2:])
        n_out = out.numel() // out.shape[0]
        macs += n_out * per_out
        mask = (masks or {}).get(names[m])
        weight_flops += n_out * per_out * (float(mask.float().mean()) if mask is not None else 1.0)
        if m.bias is not None:
            bias_adds += n_out

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles += [m.register_forward_hook(bn_hook) for m in model.modules()
                if isinstance(m, nn.modules.batchnorm._BatchNorm)]
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
    return Cost(params=params, macs=int(macs), flops=int(round(weight_flops)) + bias_adds)

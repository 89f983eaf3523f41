"""Parameter, MAC and seed-FLOP counts from one traced forward pass.

MACs: multiply-accumulates of every conv and linear layer (what thop/fvcore call "FLOPs").
Seed FLOPs: the SNIP/GraSP/SynFlow/IMP seed studies' convention (SynFlow's ``metrics.flop``): weight
MACs + bias adds + the affine scale and shift of BatchNorm (2 per output element); their VGG16-CIFAR
(``vgg16-lottery``, no BN) totals exactly 313,478,154. Given a mask, each layer's weight MACs count
times the fraction of its weights the mask keeps: the seed tables' "FLOP sparsity" numerator.
Activations and pooling are counted by neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from ..example import Example
from ..tracing import WEIGHTED, layer_macs, profile


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    flops: int  # seed convention

    def to_dict(self) -> dict:
        return asdict(self)


def count(model: nn.Module, input_shape: tuple[int, ...] | Example, masks: dict | None = None) -> Cost:
    """Costs for ONE image of shape (C, H, W) (or features for an MLP), or per sample of an ``Example``
    (a detector's inputs). ``masks``: layer name -> bool weight mask, for the density-weighted seed FLOPs
    of a masked model (MACs stay the real ones)."""
    macs, bias_adds, weight_flops = 0, 0, 0.0
    names = {m: n for n, m in model.named_modules()}
    device = next(model.parameters()).device
    example = (
        input_shape.to(device)
        if isinstance(input_shape, Example)
        else torch.zeros(1, *input_shape, device=device)
    )
    prof = profile(model, example)
    for m, calls in prof.calls.items():
        if isinstance(m, WEIGHTED):
            full = layer_macs(m, prof.positions(m))
            mask = (masks or {}).get(names[m])
            macs += full
            weight_flops += full * (float(mask.float().mean()) if mask is not None else 1.0)
            if m.bias is not None:
                bias_adds += sum(c.per_sample() for c in calls)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            bias_adds += 2 * sum(c.per_sample() for c in calls)
    params = sum(p.numel() for p in model.parameters())
    return Cost(params=params, macs=int(macs), flops=int(round(weight_flops)) + bias_adds)

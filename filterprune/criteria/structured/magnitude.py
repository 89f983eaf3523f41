"""``magnitude`` — group magnitude: for each channel, the L2 norm of its slice in every parameter of the
dependency group (conv filter, BN scale and shift, the next layers' input slices), averaged over the
group's layers. Unlike ``l1`` it sees what removing the channel removes everywhere."""

import torch
import torch.nn as nn

from ..base import Criterion


def _slices(module: nn.Module, idxs, out: bool):
    """Per-channel rows of every parameter of ``module`` touched by pruning channels ``idxs``."""
    if isinstance(module, nn.modules.conv._ConvNd):
        w = module.weight.detach()
        transposed = isinstance(module, nn.modules.conv._ConvTransposeNd)
        if out != transposed:  # output channels are dim 0 (dim 1 for transposed convs)
            yield w[idxs].flatten(1)
            if out and module.bias is not None:
                yield module.bias.detach()[idxs].unsqueeze(1)
        elif module.groups == 1:
            yield w[:, idxs].transpose(0, 1).flatten(1)
        # grouped input slices are covered by the same channels' output rows of a depthwise conv
    elif isinstance(module, nn.Linear):
        w = module.weight.detach()
        yield (w[idxs] if out else w[:, idxs].t())
        if out and module.bias is not None:
            yield module.bias.detach()[idxs].unsqueeze(1)
    elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
        if getattr(module, "weight", None) is not None and module.weight.dim() == 1:
            yield module.weight.detach()[idxs].unsqueeze(1)
            if module.bias is not None:
                yield module.bias.detach()[idxs].unsqueeze(1)


class Magnitude(Criterion):
    name = "magnitude"

    def score(self, group):
        n = len(group[0].idxs)
        per_layer: dict[tuple, torch.Tensor] = {}
        for i, (dep, idxs) in enumerate(group):
            out = dep.handler.__name__ == "prune_out_channels"
            module = dep.target.module
            root_idxs = torch.as_tensor(group[i].root_idxs)
            for rows in _slices(module, idxs, out):  # a layer's weight and bias form one L2 norm
                acc = per_layer.setdefault((id(module), out), torch.zeros(n, dtype=torch.float64))
                acc.index_add_(0, root_idxs, rows.double().pow(2).sum(1))
        if not per_layer:
            return None
        return torch.stack([v.sqrt() for v in per_layer.values()]).mean(0).float()

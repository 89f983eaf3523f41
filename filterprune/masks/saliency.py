"""A filter's mask (and scores) -> one channel saliency, higher = keep.

``density`` (default): the fraction of the filter's weights the mask keeps — the method's own verdict on
that filter, comparable across layers. Many filters tie (e.g. all at 0 at high compression), so ties are
broken by the filter's summed kept scores, added below the smallest density step (1/fan-in) so it never
reorders filters of different density within a layer.
``sum``: the sum of the method's scores over the weights the mask keeps.
"""

from __future__ import annotations

import torch
import torch.nn as nn


def _rows(t: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """(output channels, weights per channel) view of a weight-shaped tensor."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        t = t.transpose(0, 1)
    return t.reshape(t.shape[0], -1)


def channel_saliency(
    mask: torch.Tensor, scores: torch.Tensor, module: nn.Module, reduce: str
) -> torch.Tensor:
    m = _rows(mask.cpu(), module).double()
    kept_sum = (_rows(scores.detach().cpu(), module).double() * m).sum(1)
    if reduce == "sum":
        return kept_sum.float()
    fan = m.shape[1]
    rank = torch.argsort(torch.argsort(kept_sum, stable=True), stable=True).double() / len(kept_sum)
    return m.mean(1) + rank * (0.5 / fan)

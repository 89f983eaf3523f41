"""``taylor`` — first-order Taylor importance (Molchanov et al. 2019): how much the loss would change if a
channel were removed, estimated as |w * dL/dw| summed over the channel's filter and the BatchNorm scale
and shift that follow it, with the gradient accumulated over the calibration batches.

The loss is the user's: from Python ``filterprune.prune(..., criterion="taylor", loss=fn, calib=loader)``
with ``fn(model, batch) -> scalar`` on whatever batches ``loader`` yields (a detector's images and
targets, say); on the command line it is the task's (a detector's own loss on training batches), and
otherwise cross-entropy on ``(images, labels)`` calibration batches. Gradients are taken on a scratch
copy in training mode, so the model being pruned (its weights, BatchNorm statistics and gradients) is
never touched.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...data import make_loader
from ...errors import RunError, UsageError
from ...example import to_device
from ..base import Criterion, PruneContext

_SCORED = (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)


def cross_entropy(model: nn.Module, batch) -> torch.Tensor:
    """The default loss: a classifier's cross-entropy on one ``(images, labels)`` batch."""
    x, y = batch
    return F.cross_entropy(model(x), y)


class Taylor(Criterion):
    name = "taylor"
    reads = ("calib_batches",)

    def prepare(self, model: nn.Module, ctx: PruneContext) -> None:
        scratch = copy.deepcopy(model).to(ctx.device).train()
        scratch.zero_grad(set_to_none=True)
        loss_fn, batches = self._loss_and_batches(ctx)
        n = 0
        for batch in itertools.islice(batches, ctx.calib_batches):
            loss = loss_fn(scratch, to_device(batch, ctx.device))
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                raise UsageError(
                    "loss(model, batch) must return a scalar tensor computed from the model's output, "
                    f"got {type(loss).__name__ if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}",
                    ("loss",),
                )
            if not torch.isfinite(loss):
                raise RunError(f"criterion 'taylor': the loss is {float(loss)} on calibration batch {n + 1}")
            loss.backward()
            n += 1
        if n == 0:
            raise UsageError("criterion 'taylor' got no calibration batch", ("calib",))
        names = {id(m): name for name, m in model.named_modules()}
        own = dict(scratch.named_modules())
        self.saliency = {}  # id(module of the pruned model) -> {param name: |w * g|}
        for mid, name in names.items():
            m = own.get(name)
            if isinstance(m, _SCORED):
                self.saliency[mid] = {
                    p: (w.detach() * w.grad).abs().cpu()
                    for p, w in m.named_parameters(recurse=False)
                    if w.grad is not None
                }

    @staticmethod
    def _loss_and_batches(ctx: PruneContext):
        if ctx.loss is not None:
            if ctx.batches is None:
                raise UsageError("criterion 'taylor' with loss= needs calib= batches for it", ("calib",))
            return ctx.loss, iter(ctx.batches)
        if ctx.data is None:
            raise UsageError("criterion 'taylor' needs calibration data (calib= from Python)", ("calib",))
        data: Any = ctx.data  # a DataSource (ImageData, LoaderData)
        loader = make_loader(data, "train", ctx.batch_size, augment=False, shuffle=True, seed=ctx.seed)
        return cross_entropy, iter(loader)

    def score(self, group):
        n = len(group[0].idxs)
        total = torch.zeros(n, dtype=torch.float64)
        for item in group:
            dep, idxs = item.dep, item.idxs
            module = dep.target.module
            if dep.handler.__name__ != "prune_out_channels" or id(module) not in self.saliency:
                continue
            dim = 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0
            for t in self.saliency[id(module)].values():
                rows = t.transpose(0, dim)[idxs] if t.dim() > 1 else t[idxs]
                per_channel = rows.reshape(len(idxs), -1).double().sum(1)
                total.index_add_(0, torch.as_tensor(item.root_idxs), per_channel)
        return total.float()

"""One hooked forward pass that every part of the pruner reads the network from: each module's calls
(input and output shapes), the order in which leaves are first called, and, if the forward fails, the
innermost module that was running. MAC counting, ``--target-macs``, ``--round-to auto``, greedy's
execution order and the safe-apply check all use it, and ``layer_macs`` is the one MAC formula."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .example import call, samples

WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
Weighted = nn.modules.conv._ConvNd | nn.Linear  # the layers with a MAC formula (``layer_macs``)


@contextmanager
def eval_mode(*models: nn.Module):
    """Run the block with ``models`` in eval mode and give each back the mode it had."""
    modes = [m.training for m in models]
    try:
        for m in models:
            m.eval()
        yield models[0] if len(models) == 1 else models
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


def _shape(x) -> tuple | None:
    x = x[0] if isinstance(x, (tuple, list)) and x else x
    return tuple(x.shape) if isinstance(x, torch.Tensor) else None


@dataclass
class Call:
    inp: tuple | None  # shape of the first tensor argument
    out: tuple | None  # shape of the (first) tensor output

    def per_sample(self) -> int:
        return math.prod(self.out[1:]) if self.out and len(self.out) > 1 else 1


@dataclass
class Profile:
    calls: dict[nn.Module, list[Call]] = field(
        default_factory=dict
    )  # every call, modules in first-call order
    order: dict[int, int] = field(default_factory=dict)  # id(leaf module) -> index of its first call
    output: Any = None  # what the model's forward returned (torch types a module's call as Any)
    failure: tuple[nn.Module, BaseException] | None = None  # (innermost running module, error)
    batch: int | None = None  # samples in an Example's inputs; None: each call's first axis is the batch

    def layers(self) -> dict[Weighted, list[Call]]:
        """The calls of conv and linear layers."""
        return {m: c for m, c in self.calls.items() if isinstance(m, WEIGHTED)}

    def positions(self, m: Weighted) -> int:
        """Output positions per sample of conv/linear ``m``, summed over its calls (H*W for a 2-D conv,
        tokens for a linear)."""
        width = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        if self.batch is not None:  # a detector's heads run on many regions per image: count them all
            return sum(math.prod(c.out or (1,)) // self.batch // width for c in self.calls.get(m, []))
        return sum(c.per_sample() // width for c in self.calls.get(m, []))


def profile(model: nn.Module, example_inputs, catch: bool = False) -> Profile:
    """Run ``model`` once in eval mode without gradients, hooking every module. ``example_inputs``: a tensor
    or an ``example.Example``. ``catch``: a failing forward is recorded in ``failure`` instead of raised."""
    prof, stack, handles = Profile(batch=samples(example_inputs)), [], []

    def enter(m, args) -> None:  # hooks return None: a returned value would replace the input/output
        stack.append(m)
        if not any(True for _ in m.children()):
            prof.order.setdefault(id(m), len(prof.order))

    def leave(m, args, out) -> None:
        stack.pop()
        prof.calls.setdefault(m, []).append(Call(_shape(args), _shape(out)))

    for m in model.modules():
        handles += [m.register_forward_pre_hook(enter), m.register_forward_hook(leave)]
    try:
        with torch.no_grad(), eval_mode(model):
            prof.output = call(model, example_inputs)
    except Exception as e:
        if not catch:
            raise
        prof.failure = (stack[-1] if stack else model, e)
    finally:
        for h in handles:
            h.remove()
    return prof


def layer_macs(m: Weighted, positions: int, cin: int | None = None, cout: int | None = None) -> int:
    """Multiply-accumulates of conv/linear ``m`` over ``positions`` output positions, at ``cin``/``cout``
    channels (default: its own). A depthwise conv keeps one input per output whatever its width; another
    grouped conv keeps its group count. (A transposed conv's weight is (in, out/groups, k...): the same
    count.)"""
    if isinstance(m, nn.Linear):
        cin = m.in_features if cin is None else cin
        cout = m.out_features if cout is None else cout
        return positions * cout * cin
    cin = m.in_channels if cin is None else cin
    cout = m.out_channels if cout is None else cout
    kernel = math.prod(m.kernel_size)
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    return positions * cout * kernel * (1 if depthwise else cin // m.groups)

"""torch-pruning's dependency graph, wrapped: build it safely and list the prunable channel groups.

A group is every layer slice coupled to one set of output channels (conv -> BN -> next conv's inputs,
residual adds, concats, depthwise convs). Classifier outputs are never pruned.
"""
from __future__ import annotations

import traceback
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from ..errors import UsageError


@dataclass
class ChannelGroup:
    """One prunable group: its root layer, channel count and the grouped-conv multiplicity.

    With a grouped conv (groups=g, not depthwise) the same positions must go from each of the g blocks,
    so allocation works on ``units = channels // ch_groups`` and indices repeat per block.
    """

    group: object  # tp Group holding full indices
    root: nn.Module
    root_name: str
    handler: object
    channels: int
    ch_groups: int

    @property
    def units(self) -> int:
        return self.channels // self.ch_groups


def classifier_layers(model: nn.Module, num_classes: int) -> list[nn.Module]:
    """Layers whose outputs are class logits (out features/channels == num_classes): kept whole."""
    return [m for m in model.modules()
            if (isinstance(m, nn.Linear) and m.out_features == num_classes)
            or (isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == num_classes)]


def build_graph(model: nn.Module, example_inputs: torch.Tensor) -> tp.DependencyGraph:
    """Trace the model (in eval mode, with grad enabled, as torch-pruning needs) and restore its mode."""
    was_training = model.training
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    except Exception as e:
        where = _failing_layer(model, e)
        frames = [f.name for f in traceback.extract_tb(e.__traceback__) if "torch_pruning" in f.filename]
        step = f" in torch-pruning's {frames[-1]}" if frames else ""
        raise UsageError(f"could not trace {type(model).__name__} into a dependency graph"
                         f"{f' at the operation after layer {where}' if where else ''} "
                         f"({type(e).__name__}{step}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                         "this architecture cannot be pruned structurally") from None
    finally:
        model.train(was_training)


def _failing_layer(model: nn.Module, exc: BaseException) -> str | None:
    """The model layer nearest (upstream) to the graph node torch-pruning failed on, if it says."""
    names = {id(m): n for n, m in model.named_modules() if n}
    node, tb = None, exc.__traceback__
    while tb is not None:  # the innermost frame that was working on a graph node
        node = tb.tb_frame.f_locals.get("node", node)
        tb = tb.tb_next
    seen, todo = set(), [node] if node is not None else []
    while todo:
        n = todo.pop(0)
        if id(getattr(n, "module", None)) in names:
            return names[id(n.module)]
        if id(n) not in seen:
            seen.add(id(n))
            todo += list(getattr(n, "inputs", []))
    return None


def _channel_groups(DG: tp.DependencyGraph, module: nn.Module, out: bool) -> int:
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups == module.out_channels:
        return 1  # depthwise: channels map one-to-one
    pruner = DG.get_pruner_of_module(module)
    if pruner is None:
        return 1
    n = pruner.get_out_channel_groups(module) if out else pruner.get_in_channel_groups(module)
    return n or 1


def channel_groups(DG: tp.DependencyGraph, ignored: list[nn.Module]) -> list[ChannelGroup]:
    """All prunable groups rooted at a conv or linear layer, in graph order."""
    ignored_all = [m for layer in ignored for m in layer.modules()]
    result = []
    for group in DG.get_all_groups(ignored_layers=ignored_all, root_module_types=[nn.modules.conv._ConvNd, nn.Linear]):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        ch_groups = max(_channel_groups(DG, dep.target.module, DG.is_out_channel_pruning_fn(dep.handler))
                        for dep, _ in group)
        channels = DG.get_out_channels(root)
        if channels is None or channels % ch_groups:
            warnings.warn(f"layer {DG._module2name[root]} is left unpruned: its {channels} channels do not split "
                          f"into the {ch_groups} groups of a coupled grouped conv", stacklevel=2)
            continue
        result.append(ChannelGroup(group, root, DG._module2name[root], handler, channels, ch_groups))
    return result


@torch.no_grad()
def execution_order(model: nn.Module, example_inputs: torch.Tensor) -> dict[int, int]:
    """id(module) -> the order in which a forward pass first calls it (leaf modules only)."""
    order: dict[int, int] = {}
    leaves = [m for m in model.modules() if not any(True for _ in m.children())]

    def seen(m, _):
        order.setdefault(id(m), len(order))  # returns None: a pre-hook's return value would replace the input

    handles = [m.register_forward_pre_hook(seen) for m in leaves]
    was_training = model.training
    try:
        model.eval()(example_inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return order

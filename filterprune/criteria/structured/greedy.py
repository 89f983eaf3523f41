"""``greedy`` — Lajić et al. 2025 output-norm greedy: remove the filter whose output has the lowest norm
on calibration data *in the network as pruned so far*, one filter at a time, re-measuring after each removal.

Why one forward per group is exact: a filter's output does not depend on its siblings, so removing one
filter never changes the norms of the others in its layer; only layers *after* it see a difference. The
pipeline therefore scores groups one by one in execution order (``sequential = True``), removing each
group's lowest filters before the next group is measured — the same choices as re-measuring after every
single removal, at the cost of one calibration pass per group instead of one per filter.

What "output" means: the tensor the rest of the network reads from the channel — measured at the inputs of
the layers that consume it (after BatchNorm, activation, pooling, the residual add or the concat). This is
what removing the channel takes away, and it is scale-honest in BN networks, where a conv's raw output
norm is undone by the BatchNorm after it. A coupled group (residual stage, concat) sums the energy over all
its readers. Score = sqrt(sum of squares) over calibration images and positions.

Cost: the model is traced with torch.fx and run segment by segment. The live tensors at the start of the
current group are cached for every calibration batch, so measuring a group runs only from that group to
its readers, and the cache is advanced once past each pruned group: about two passes over the (shrinking)
network in all, not one per group. Greedy is layerwise only: its per-layer norms come from different
stages of pruning and are not comparable across layers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ...data import make_loader
from ...errors import UsageError
from ...tracing import eval_mode
from ..base import Criterion


def trace(model: nn.Module) -> fx.GraphModule:
    """A torch.fx trace that shares the model's leaf modules (so pruning them in place is seen)."""
    try:
        return fx.symbolic_trace(model)
    except Exception as e:
        raise UsageError(
            f"criterion 'greedy' needs a torch.fx-traceable model; {type(model).__name__} is not "
            f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        ) from None


def _is_out(dep) -> bool:
    return dep.handler.__name__ == "prune_out_channels"


def group_members(group) -> tuple[set[nn.Module], list[tuple[nn.Module, list[int], list[int]]]]:
    """(modules whose outputs the group prunes, [(reader, input idxs, root idxs)]) — readers are the conv
    and linear layers that consume the group's channels and pass them on no further."""
    producers = {dep.target.module for dep, _ in group if _is_out(dep)}
    readers: list[tuple[nn.Module, list[int], list[int]]] = []
    for item in group:
        m = item.dep.target.module
        if (
            isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
            and not _is_out(item.dep)
            and m not in producers
        ):
            readers.append((m, list(item.idxs), list(item.root_idxs)))
    return producers, readers


def _channel_energy(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """Sum of squares per input channel (dim 1 for convs, the last dim for linear layers)."""
    x = x.detach()
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1]).square().sum(0).double()
    dims = [0, *range(2, x.dim())]
    return x.square().sum(dims).double()


class SegmentRunner:
    """Runs a traced model from a cached cut to a later node, for a fixed list of input batches."""

    def __init__(self, model: nn.Module, batches: list[torch.Tensor]):
        self.model, self.batches = model, batches
        self.gm = trace(model)
        self.nodes = list(self.gm.graph.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        self.modules = dict(self.gm.named_modules())
        self.module_nodes: dict[int, list[int]] = {}
        for i, n in enumerate(self.nodes):
            if n.op == "call_module":
                self.module_nodes.setdefault(id(self.modules[n.target]), []).append(i)
        last_use = {n: max((self.index[u] for u in n.users), default=i) for i, n in enumerate(self.nodes)}
        self.free_after: dict[int, list[fx.Node]] = {}
        for n, i in last_use.items():
            self.free_after.setdefault(i, []).append(n)
        self.envs: list[dict[fx.Node, Any]]  # per batch: each node's value, from the cut on (reset)
        self.reset()

    def reset(self) -> None:
        self.cut, self.envs = 0, [{} for _ in self.batches]

    def position(self, modules) -> int | None:
        """Index of the first node that runs any of ``modules``."""
        found = [self.module_nodes[id(m)][0] for m in modules if id(m) in self.module_nodes]
        return min(found) if found else None

    def _value(self, env, node):
        if node.op == "get_attr":  # parameters are read fresh: pruning replaces them
            obj = self.gm
            for part in node.target.split("."):
                obj = getattr(obj, part)
            return obj
        return env[node]

    def _run(self, env: dict, x: torch.Tensor, start: int, stop: int, watch=None) -> None:
        """Execute nodes [start, stop) in ``env``; ``watch[i](args)`` sees a node's inputs before it runs."""
        for i in range(start, stop):
            node = self.nodes[i]
            if node.op == "output":
                return
            if node.op == "placeholder":
                env[node] = x
            elif node.op != "get_attr":
                args = fx.node.map_arg(node.args, lambda n: self._value(env, n))
                kwargs = fx.node.map_arg(node.kwargs, lambda n: self._value(env, n))
                if watch and i in watch:
                    watch[i](args)
                    if i == stop - 1:
                        return  # the last reader: its inputs are all we need
                if node.op == "call_module":
                    env[node] = self.modules[node.target](*args, **kwargs)
                elif node.op == "call_function":
                    env[node] = node.target(*args, **kwargs)
                else:  # call_method
                    env[node] = getattr(args[0], node.target)(*args[1:], **kwargs)
            for dead in self.free_after.get(i, ()):
                env.pop(dead, None)

    @torch.no_grad()
    def advance(self, to: int) -> None:
        """Move the cache to node ``to`` with the current weights (from the input if ``to`` is behind it)."""
        if to < self.cut:
            self.reset()
        for env, x in zip(self.envs, self.batches):
            self._run(env, x, self.cut, to)
        self.cut = to

    @torch.no_grad()
    def reader_energy(self, readers, n: int) -> torch.Tensor:
        """Per root channel: sum of squares of what ``readers`` read, over all batches, each tensor once."""
        targets: dict[int, list] = {}
        for m, idxs, root in readers:
            for i in self.module_nodes.get(id(m), []):
                if i >= self.cut:
                    targets.setdefault(i, []).append((m, torch.as_tensor(idxs), torch.as_tensor(root)))
        energy = torch.zeros(n, dtype=torch.float64)
        if not targets:
            return energy
        stop = max(targets) + 1
        seen: dict[int, torch.Tensor] = {}

        def record(i, args):
            inp = args[0]
            if id(inp) in seen:  # two readers of one tensor (a block input and its shortcut)
                return
            seen[id(inp)] = inp
            m, idxs, root = targets[i][0]
            energy.index_add_(0, root, _channel_energy(inp, m)[idxs])

        watch = {i: (lambda a, i=i: record(i, a)) for i in targets}
        for env, x in zip(self.envs, self.batches):
            seen.clear()
            self._run(dict(env), x, self.cut, stop, watch)
        return energy


class Greedy(Criterion):
    reads = ("calib_batches",)
    name = "greedy"
    sequential = True  # groups are scored one by one, each after the previous ones were pruned

    def check(self, model):
        trace(model)

    def prepare(self, model, ctx):
        if ctx.data is None:
            raise UsageError("criterion 'greedy' needs calibration data")
        loader = make_loader(ctx.data, "train", ctx.batch_size, augment=False, shuffle=True, seed=ctx.seed)
        device = next(model.parameters()).device
        batches = []
        for x, _ in loader:
            batches.append(x.to(device))
            if len(batches) == ctx.calib_batches:
                break
        self.runner = SegmentRunner(model, batches)

    def score(self, group):
        producers, readers = group_members(group)
        start = self.runner.position(producers)
        if start is None or not readers:
            return None
        with eval_mode(self.runner.model):
            self.runner.advance(start)
            return self.runner.reader_energy(readers, len(group[0].idxs)).sqrt().float()

"""torch-pruning's dependency graph, wrapped: build it safely and list the prunable channel groups.

A group is every layer slice coupled to one set of output channels (conv -> BN -> next conv's inputs,
residual adds, concats, depthwise convs). The layers producing the model's output are never pruned.
"""

from __future__ import annotations

import itertools
import math
import traceback
import warnings
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp
from torch.overrides import TorchFunctionMode
from torch_pruning import _helpers, ops
from torch_pruning.dependency import index_mapping, shape_infer

from ..errors import UsageError
from ..example import call, leaves
from ..tracing import WEIGHTED, eval_mode, profile


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
    opaque: str | None = None  # why the group must stay whole (its channels pass an opaque reshape/concat)
    layers: tuple[str, ...] = ()  # the conv/linear layers whose outputs it prunes, root first (ratios=)

    @property
    def units(self) -> int:
        return self.channels // self.ch_groups


def output_layers(DG: tp.DependencyGraph) -> list[nn.Module]:
    """The layers that produce the model's output, found by position, not by width: walking back from
    every output of the traced graph, the first conv or linear layer on each path (through activations,
    pooling, flattening, adds and concats). Their output channels are the model's interface (the class
    logits; a detector's boxes, scores and anchors), so they are kept whole whatever their width. Besides
    the graph's ends, every output tensor counts (a backbone's feature map that also feeds the next stage),
    as ``build_graph`` found them on the autograd graph."""
    ends = [n for n in DG.module2node.values() if not n.outputs]
    found: list[nn.Module] = [m for m in getattr(DG, "output_modules", ()) if m in DG.module2node]
    seen, todo = set(), list(ends)
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node.module, (nn.modules.conv._ConvNd, nn.Linear)):
            if node.module not in found:
                found.append(node.module)
            continue
        todo += node.inputs
    return found


def resolve_ignored(model: nn.Module, layers) -> list[nn.Module]:
    """``--ignore-layers`` / ``ignored_layers``: module names (a container protects all it holds) or
    module instances of ``model``; an unknown name is a UsageError listing a few valid ones."""
    named = dict(model.named_modules())
    owned = {id(m) for m in named.values()}
    result = []
    for layer in layers or ():
        if isinstance(layer, str):
            if layer not in named or not layer:
                close = [n for n in named if n and (layer in n or n in layer)][:5] or [n for n in named if n][
                    :5
                ]
                raise UsageError(
                    f"--ignore-layers: no layer named {layer!r} in {type(model).__name__}; "
                    f"e.g. {', '.join(close)}"
                )
            result.append(named[layer])
        elif isinstance(layer, nn.Module) and id(layer) in owned:
            result.append(layer)
        else:
            raise UsageError(
                f"ignored_layers: {type(layer).__name__} is not a layer of this model (pass module "
                "instances of the model being pruned, or their names)"
            )
    return result


def build_graph(model: nn.Module, example_inputs, deploy=None) -> tp.DependencyGraph:
    """Trace the model (in eval mode, with grad enabled, as torch-pruning needs) and restore its mode.

    ``example_inputs``: a tensor or an ``example.Example``; the model may return any nesting of tensors
    (``_traced_forward``). ``deploy(model)``: the network as deployed (a wrapper around ``model``, e.g. a
    detector without its post-processing), whose outputs alone are then the graph's: what the model
    returns besides (YOLO's eval mode returns its neck's feature maps with the boxes) is not kept whole.

    Reshapes and concats whose channel mapping torch-pruning cannot establish are made opaque (``_settle_*``)
    instead of failing the trace or coupling channels wrongly; ``channel_groups`` leaves the groups through
    them whole.
    """
    DG, forward = _Graph(), _TracedForward(deploy)
    try:
        with torch.enable_grad(), eval_mode(model):
            try:
                with _ShapeRecorder() as recorder:
                    DG.build_dependency(model, example_inputs=example_inputs, forward_fn=forward)
            except Exception as e:  # traced, then failed while mapping indices: settle the mappings below
                if not any(f.name == "update_index_mapping" for f in traceback.extract_tb(e.__traceback__)):
                    raise
            _settle_splits(DG, recorder.cats)
            _settle_reshapes(DG, recorder.shapes)
            _settle_concats(DG)
            index_mapping.update_index_mapping(DG)
        DG.output_modules = forward.outputs
        return DG
    except UsageError:
        raise
    except Exception as e:
        where = _failing_layer(model, e)
        frames = [f.name for f in traceback.extract_tb(e.__traceback__) if "torch_pruning" in f.filename]
        step = f" in torch-pruning's {frames[-1]}" if frames else ""
        raise UsageError(
            f"could not trace {type(model).__name__} into a dependency graph"
            f"{f' at the operation after layer {where}' if where else ''} "
            f"({type(e).__name__}{step}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
            "this architecture cannot be pruned structurally"
        ) from None


class _Graph(tp.DependencyGraph):
    """torch-pruning's graph, whose replayed history (``load``) removes each layer's channels once, as
    ``prune`` did (``pruning_group``)."""

    def load_pruning_history(self, pruning_history) -> None:
        self._pruning_history = pruning_history
        modules = dict(self.model.named_modules())
        for name, is_out, idxs in pruning_history:
            pruner = self.get_pruner_of_module(modules[name])
            fn = pruner.prune_out_channels if is_out else pruner.prune_in_channels
            pruning_group(self, modules[name], fn, idxs).prune(record_history=False)


class _TracedForward:
    """The forward torch-pruning traces: the model on its example inputs, returning the tensors to trace
    back from — every float output leaf that has a graph, and the output of every conv or linear layer
    that no output depends on (a detector's region-proposal head, whose proposals are detached before they
    are used). Those dead ends become graph ends too, so the layers producing them are kept whole like
    every other output layer, and their inputs shrink with the rest. ``outputs``: the output layers, found
    on the autograd graph from each end back to the first conv or linear layer on every path."""

    def __init__(self, deploy=None):
        self.outputs: list[nn.Module] = []
        self.deploy = deploy

    def __call__(self, model: nn.Module, example_inputs) -> list[torch.Tensor]:
        produced: dict = {}  # grad_fn -> the conv/linear layer whose output it made

        def keep(m, args, out) -> None:
            if isinstance(out, torch.Tensor) and out.grad_fn is not None:
                produced[out.grad_fn] = (m, out)

        handles = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, WEIGHTED)]
        try:
            out = call(self.deploy(model) if self.deploy else model, example_inputs)
        finally:
            for h in handles:
                h.remove()
        ends = [t for _, t in leaves(out) if t.is_floating_point() and t.grad_fn is not None]
        if not ends:
            raise UsageError(
                f"{type(model).__name__} returns no floating-point tensor computed from its inputs, so "
                "there is nothing to trace its layers back from",
                ("example_inputs",),
            )
        reached = _reachable([t.grad_fn for t in ends], set())
        dead = {fn: t for fn, (_, t) in produced.items() if fn not in reached}
        fed = _reachable([f for fn in dead for f, _ in fn.next_functions], set())  # dead ends only
        dead = {fn: t for fn, t in dead.items() if fn not in fed}
        last = _reachable([t.grad_fn for t in ends] + list(dead), set(produced))
        self.outputs = list(dict.fromkeys(produced[fn][0] for fn in last if fn in produced))
        return ends + list(dead.values())


def _reachable(roots, stops: set) -> set:
    """Every autograd node the given ones depend on, not walking past those in ``stops``."""
    seen, todo = set(), list(roots)
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn not in stops:
            todo += [f for f, _ in fn.next_functions]
    return seen


_CATS = (torch.cat, torch.concat, torch.concatenate)


class _ShapeRecorder(TorchFunctionMode):
    """Records (input shape, output shape) of every traced op by its grad_fn: torch-pruning keeps the grad_fn
    of a reshape but not the shape it produced, which is what says whether channels are regrouped; and the
    input widths of every channel concat."""

    def __init__(self):
        super().__init__()
        self.shapes: dict = {}
        self.cats: dict = {}  # a channel concat's grad_fn -> the widths of its inputs

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if (
            isinstance(out, torch.Tensor)
            and out.grad_fn is not None
            and args
            and isinstance(args[0], torch.Tensor)
        ):
            # the op that made the tensor comes first; a no-op returning it later (eval Dropout) must
            # not overwrite
            self.shapes.setdefault(out.grad_fn, (tuple(args[0].shape), tuple(out.shape)))
        elif func in _CATS and isinstance(out, torch.Tensor) and out.grad_fn is not None and out.ndim > 1:
            dim = (kwargs or {}).get("dim", args[1] if len(args) > 1 else 0)
            if dim % out.ndim == 1:  # the widths a concat of channels reads, which torch-pruning guesses
                self.cats.setdefault(out.grad_fn, [int(t.shape[1]) for t in args[0]])
        return out


def _settle_splits(DG: tp.DependencyGraph, cats: dict) -> None:
    """Give ``chunk``/``split`` by an int their real sizes. torch-pruning 1.6.1 reads them only when the
    grad_fn has ``_saved_self_sizes``, which torch 2 names ``_saved_self_sym_sizes``; otherwise it guesses
    them from neighbouring layers (ShuffleNetV2: [192, 96] for a chunk of 96 into 48 + 48)."""
    for node in DG.module2node.values():
        gf = node.grad_fn
        if node.type != ops.OPTYPE.SPLIT or not hasattr(gf, "_saved_split_size"):
            continue
        size, dim, step = gf._saved_self_sym_sizes, gf._saved_dim, gf._saved_split_size
        for dep in _deps_touching(node):
            dep.index_mapping = [None, None]
        if dim % len(size) != 1:  # torch-pruning maps splits of the channel dim only
            node.module.split_sizes = node.module.offsets = None
            continue
        sizes = [min(step, size[1] - i) for i in range(0, size[1], step)]
        node.module.split_sizes, node.module.offsets = sizes, [0, *itertools.accumulate(sizes)]
        if not _chunks_in_order(node):
            if len(set(sizes)) == 1:
                _fold(node, sizes[0], len(sizes), cats)
            else:
                node.module.split_sizes = node.module.offsets = None
                _make_opaque(node, "a split of unequal pieces read out of order or together")


def _chunks_in_order(node) -> bool:
    """Whether the i-th reader of a split reads its i-th piece, and only that one: the one layout
    torch-pruning maps (its readers are listed, and mapped, in piece order). ``chunk`` read as
    ``cat([a, b, m(b)])`` (YOLOv8's C2f) is not; its channels would be mapped to the wrong pieces."""
    for i, out in enumerate(node.outputs):
        read = {nr for fn, nr in getattr(out.grad_fn, "next_functions", ()) if fn is node.grad_fn}
        if read and read != {i}:
            return False
    return True


class _Fold:
    """The index mapping of a folded split: channel i of its input is position i % size of every piece
    (``reverse``: a position is that channel of every piece)."""

    def __init__(self, size: int, pieces: int, reverse: bool):
        self.size, self.pieces, self.reverse = size, pieces, reverse

    def __call__(self, idxs):
        if self.reverse:
            pairs = {(i.idx + p * self.size, i.root_idx) for p in range(self.pieces) for i in idxs}
        else:
            pairs = {(i.idx % self.size, i.root_idx) for i in idxs}
        # sorted and without repeats: torch-pruning stops walking a cycle when the same list comes back
        return [_helpers._HybridIndex(idx=i, root_idx=r) for i, r in sorted(pairs)]


def _fold(node, size: int, pieces: int, cats: dict) -> None:
    """A split into equal pieces whose readers take them out of order or together (YOLOv8's C2f:
    ``cat([a, b, m(b)])`` beside ``m(b)``): channel k of every piece goes together. Between the split and
    its readers the channels are a piece's positions (a concat places them by its own offsets); between
    its input and the split they fold onto the positions and back. The pieces then stay equal, as a
    ``chunk`` needs, and each position is one unit of ``folded`` pieces for a group rooted before the
    split (``channel_groups``). torch-pruning's own split mapping is switched off (no offsets)."""
    node.module.split_sizes, node.module.offsets = [size] * len(node.outputs), None
    node.folded = (size, pieces)
    for reader in node.outputs:  # a concat reading pieces: its input widths as traced, not guessed
        widths = cats.get(reader.grad_fn)
        if reader.type == ops.OPTYPE.CONCAT and widths and len(widths) == len(reader.inputs):
            reader.module.concat_sizes = widths
    for dep in _deps_touching(node):
        dep.index_mapping = [None, None]
    for n in node.inputs:
        for dep in n.dependencies:
            if dep.target is node:
                dep.index_mapping[0] = _Fold(size, pieces, reverse=False)
    for dep in node.dependencies:
        if dep.target in node.inputs:
            dep.index_mapping[0] = _Fold(size, pieces, reverse=True)


def pruning_group(DG: tp.DependencyGraph, module: nn.Module, handler, idxs):
    """torch-pruning's group removing ``idxs`` of ``module``, with each layer's indices listed once.

    A folded split (``_fold``) maps channels k and k + size of its input to the same position k of its
    readers, once per root index: the criteria credit a reader's weights to both root channels. Removing,
    a position is one channel, but torch-pruning counts the list: ``check_pruning_group`` would find half
    of a C2f's channels emptying the bottleneck that reads one piece, and a pruned layer would record
    fewer channels than its weight keeps."""
    group = DG.get_pruning_group(module, handler, idxs)
    for i, item in enumerate(group.items):
        once: dict = {}  # index -> its first root index
        for idx, root in zip(item.idxs, item.root_idxs):
            once.setdefault(idx, root)
        if len(once) < len(item.idxs):
            group[i] = _helpers.GroupItem(item.dep, list(once))
            group[i].root_idxs = list(once.values())
    return group


def _settle_reshapes(DG: tp.DependencyGraph, shapes: dict) -> None:
    """Decide what each reshape does to channels, instead of torch-pruning 1.6.1's guesses.

    Its guess is guarded by the input size it reads from ``grad_fn._saved_self_sizes``, which torch 2 names
    ``_saved_self_sym_sizes``, so the guard never runs: it divides by zero on ShuffleNetV2's channel shuffle
    and maps attention's head reshapes (Swin, MaxViT) as flattens of stride 32, whose cycles multiply index
    lists without end (group enumeration never finished). Here, from the recorded shapes:

    - a flatten of (N, C, H, W) to (N, C*H*W) in front of a Linear stays torch-pruning's flatten mapping;
    - one that keeps the channel axis (axis 1: ``flatten(2)``, (N, C, 1, 1) -> (N, C); or the last axis of
      channels-last tensors: Swin's windows), or that runs inside one op (``F.linear`` flattening leading
      axes: never seen by the recorder), is an identity;
    - anything else moves channels in a way torch-pruning cannot map (the channel shuffle
      ``view(n, 2, c/2, h, w)``, attention heads): it becomes opaque, and ``channel_groups`` leaves every
      group through it whole.

    Identity and opaque reshapes get the element-wise type, which ``update_index_mapping`` (re-run by every
    ``get_pruning_group``) leaves alone.
    """
    for node in list(DG.module2node.values()):
        if node.type != ops.OPTYPE.RESHAPE:
            continue
        i, o = shapes.get(node.grad_fn, (None, None))
        if i is not None:
            c = next(
                (
                    c
                    for n in node.inputs
                    if (c := shape_infer.infer_out_channels_recursively(DG, n, [0])) is not None
                ),
                None,
            )
            if len(i) == 4 and i[1] == c and o == (i[0], math.prod(i[1:])):
                continue
            kept = (
                len(i) >= 2
                and len(o) >= 2
                and ((i[1] == c and o[:2] == i[:2]) or (i[-1] == c and o[-1] == c))
            )
            if not kept:
                _make_opaque(
                    node,
                    f"a reshape ({node.grad_fn.name()}) that torch-pruning cannot map channel by "
                    f"channel ({i} -> {o})",
                )
                continue
        for dep in _deps_touching(node):
            dep.index_mapping = [None, None]
        node.type = ops.OPTYPE.ELEMENTWISE


def _deps_touching(node) -> list:
    return [
        *node.dependencies,
        *(d for n in (*node.inputs, *node.outputs) for d in n.dependencies if d.target is node),
    ]


def _settle_concats(DG: tp.DependencyGraph) -> None:
    """A concat whose input widths torch-pruning cannot infer (its recursion gives up after 500 nodes:
    Swin-S/B's patch merging after 18 blocks) makes its mapping raise; it becomes opaque instead."""
    for node in list(DG.module2node.values()):
        if node.type == ops.OPTYPE.CONCAT:
            try:
                index_mapping.update_concat_index_mapping(DG, node)
            except Exception as e:
                node.module.concat_sizes = node.module.offsets = None  # its pruner then does nothing
                _make_opaque(
                    node, f"a concat whose input widths torch-pruning cannot infer ({type(e).__name__})"
                )


def _make_opaque(node, what: str) -> None:
    for dep in _deps_touching(node):
        dep.index_mapping = [None, None]
    node.type = ops.OPTYPE.ELEMENTWISE
    node.opaque = what


def _failing_layer(model: nn.Module, exc: BaseException) -> str | None:
    """The model layer nearest (upstream) to the graph node torch-pruning failed on, if it says."""
    node, tb = None, exc.__traceback__
    while tb is not None:  # the innermost frame that was working on a graph node
        node = tb.tb_frame.f_locals.get("node", node)
        tb = tb.tb_next
    return _upstream_layer(node, {id(m): n for n, m in model.named_modules() if n})


def _upstream_layer(node, names: dict[int, str]) -> str | None:
    """The named layer nearest upstream of a graph node (breadth first)."""
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
    """All groups rooted at a conv or linear layer, in graph order; those with ``opaque`` set must stay
    whole."""
    ignored_all = [m for layer in ignored for m in layer.modules()]
    result = []
    for group in DG.get_all_groups(
        ignored_layers=ignored_all, root_module_types=[nn.modules.conv._ConvNd, nn.Linear]
    ):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        ch_groups = max(
            _channel_groups(DG, dep.target.module, DG.is_out_channel_pruning_fn(dep.handler))
            for dep, _ in group
        )
        channels = DG.get_out_channels(root)
        ch_groups = max(ch_groups, _fold_groups(group, channels))
        if channels is None or channels % ch_groups:
            warnings.warn(
                f"layer {DG._module2name[root]} is left unpruned: its {channels} channels do not split "
                f"into the {ch_groups} groups of a coupled grouped conv",
                stacklevel=2,
            )
            continue
        opaque = next(
            (
                f"its channels pass {dep.target.opaque}{_after(DG, dep.target)}"
                for dep, _ in group
                if getattr(dep.target, "opaque", None)
            ),
            None,
        )
        layers = tuple(
            dict.fromkeys(
                DG._module2name[dep.target.module]
                for dep, _ in group
                if DG.is_out_channel_pruning_fn(dep.handler) and isinstance(dep.target.module, WEIGHTED)
            )
        )
        result.append(
            ChannelGroup(group, root, DG._module2name[root], handler, channels, ch_groups, opaque, layers)
        )
    return result


def _fold_groups(group, channels: int | None) -> int:
    """The pieces of a folded split (``_fold``) that a group rooted before it spans: its root's channels
    are then every piece's, and one position is that many channels."""
    for dep, _ in group:
        size, pieces = getattr(dep.target, "folded", (0, 1))
        if channels == size * pieces:
            return pieces
    return 1


def _after(DG: tp.DependencyGraph, node) -> str:
    where = _upstream_layer(node, {id(m): n for n, m in DG.model.named_modules() if n})
    return f" after layer {where}" if where else ""


def execution_order(model: nn.Module, example_inputs) -> dict[int, int]:
    """id(module) -> the order in which a forward pass first calls it (leaf modules only)."""
    return profile(model, example_inputs).order

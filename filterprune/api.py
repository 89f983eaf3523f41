"""The public Python surface (``filterprune.prune``, ``save``, ``load``, ``compress``), as short as
Torch-Pruning's:

    import filterprune
    result = filterprune.prune(model, example_inputs, criterion="l1", sparsity=0.4, calib=loader,
                               ignored_layers=[model.fc])
    result.model                    # the pruned module (the same object, pruned in place;
                                    # inplace=False: a copy)
    filterprune.save(result.model, "out/")
    again = filterprune.load("out/", model=MyNet())        # replays the pruning on a fresh dense module

    out = filterprune.compress(model=net, train=train_loader, test=test_loader, criterion="l1", sparsity=0.4)

``prune`` is the pipeline's own prune stage (same criteria, allocation, dependency-graph shrink, output
layers kept whole); ``compress`` the whole line (finetune, ONNX with parity, benchmark, report) on the
user's objects. Nothing here pickles: ``save`` writes safetensors + JSON (the pruning history), and a
module handed over in Python is rebuilt only from the dense module the caller hands back to ``load``.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from . import handed, outputs
from . import serialization as ckpt
from .benchmarking import counting
from .config import CompressConfig
from .criteria import Criterion, PruneContext, make_criterion
from .data.stream import LoaderData
from .errors import UsageError
from .example import Example, as_example
from .inputs import Given
from .models import ModelSpec
from .models.factory import object_ref
from .pipeline import Compressed, run
from .pruning.plan import PlanConfig
from .pruning.ratios import layer_ratios
from .pruning.shrink import prune as shrink
from .targets import Target
from .train import resolve_device

_D = CompressConfig.defaults()  # the options' one default each

# module -> {"spec": ModelSpec, "history": [...]}: how save() records what prune()/load() did to it
_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass
class Pruned:
    """What ``prune`` did. ``removed``: layer name -> output channels removed."""

    model: nn.Module
    criterion: str
    sparsity: float
    history: list
    layers: list[dict]
    removed: dict[str, int]
    unprunable: dict[str, str] = field(default_factory=dict)
    dense: dict = field(default_factory=dict)  # params, macs
    pruned: dict = field(default_factory=dict)

    @property
    def theoretical_speedup(self) -> float:
        return self.dense["macs"] / max(self.pruned["macs"], 1)


def _example(example_inputs) -> torch.Tensor:
    """One image batch (N, C, H, W), as ``save`` and ``compress`` take it: its first sample, on the CPU."""
    ex = as_example(example_inputs)
    x = ex.plain
    if x is None:
        raise UsageError(
            f"example_inputs must be one image batch (N, C, H, W) here, got {ex.describe()}",
            ("example_inputs",),
        )
    return x[:1].detach().cpu().float()


def _out_width(model: nn.Module, x: torch.Tensor) -> int:
    return int(handed.logits(model, x, "example_inputs").shape[-1])


def prune(
    model: nn.Module,
    example_inputs,
    criterion: str = "l1",
    sparsity: float | None = None,
    *,
    target_macs: float | None = None,
    target_speedup: float | None = None,
    target_latency: float | None = None,
    ratios: dict | None = None,
    calib=None,
    loss=None,
    ignored_layers=(),
    scope: str | None = None,
    round_to: int | str = _D["round_to"],
    layer_floor: float = _D["layer_floor"],
    calib_batches: int = _D["calib_batches"],
    compression: float | None = None,
    seed: int = _D["seed"],
    target_runtime: str = _D["target_runtime"],
    target_batch: int = _D["target_batch"],
    target_precision: str = _D["target_precision"],
    threads: int | None = None,
    device: str = "cpu",
    inplace: bool = True,
) -> Pruned:
    """Prune ``model`` (in place, or a deep copy with ``inplace=False``) and return what was done.

    ``example_inputs``: what the model is called on (``filterprune.example``): an image batch (any H, W),
    a tuple of inputs, a dict of keyword inputs, or a list of images (torchvision detectors). The model
    may return any nesting of tensors; the layers producing each output tensor are kept whole (a
    classifier's logits, a detector's box and class predictions), and the pruned model returns the same
    structure. The target is one of ``sparsity`` (a fraction of channels; 0.4 when no target is given),
    ``target_macs`` (a fraction of the dense MACs), ``target_speedup`` or ``target_latency`` (ms; both
    measured on ``target_runtime`` at ``target_batch``). ``ratios``: per-layer sparsities, ``{name or
    module: sparsity}``, for the layers under that name (a container's name covers all it holds; the
    longest name wins) instead of the target. ``target_precision``: the kernels the measured targets and
    ``round_to="auto"`` plan on (``"int8"``: the INT8 QDQ files the deployment runs; ``"fp32"`` by default).
    ``calib``: a DataLoader for the data-driven criteria (greedy, snip, grasp, imp, taylor), yielding
    ``(images, labels)``, or any batches ``loss`` takes: ``loss(model, batch) -> scalar`` is what
    ``taylor`` differentiates (default: cross-entropy on ``(images, labels)``).
    ``ignored_layers``: modules (or names) kept whole besides the output layers. Other arguments mean what
    the ``compress`` options of the same names mean.
    """
    job = setup(**locals())
    before = job.count()
    return job.done(shrink(job.model, job.crit, job.plan, job.ctx, job.width), before)


@dataclass
class Job:
    """A prune call set up: the module (on the CPU), its criterion, plan, classes (0: not a classifier),
    the inputs the pruner calls it on, and the criterion's context."""

    model: nn.Module
    criterion: str
    crit: Criterion
    plan: PlanConfig
    width: int
    inputs: object
    ctx: PruneContext

    def count(self) -> counting.Cost:
        return counting.count(self.model, _shape(self.inputs))

    def done(self, result, before: counting.Cost) -> Pruned:
        """Record ``result`` for ``save`` (one square image batch only) and say what was done."""
        x = self.inputs
        if isinstance(x, torch.Tensor) and x.shape[-1] == x.shape[-2]:
            spec = ModelSpec(object_ref(self.model), self.width, x.shape[1], x.shape[2])
            _remember(self.model, spec, result.history)
        return _pruned(self.model, self.criterion, result, before, self.count())


def setup(model, example_inputs, criterion, sparsity, **kw) -> Job:
    """What ``prune`` and ``Pruner`` do before they cut: checks, options, the criterion and its context
    (``kw``: ``prune``'s keywords)."""
    model, ex, ignored, named = _subject(
        model, example_inputs, kw["ignored_layers"], kw["inplace"], kw["ratios"]
    )
    crit = make_criterion(criterion)
    keys = (
        "round_to",
        "layer_floor",
        "calib_batches",
        "compression",
        "seed",
        "target_runtime",
        "target_precision",
    )
    cfg = CompressConfig.of(
        model=object_ref(model),
        criterion=criterion,
        **_target(sparsity, kw["target_macs"], kw["target_speedup"], kw["target_latency"]),
        scope=kw["scope"],
        target_batch=kw["target_batch"],
        threads=kw["threads"],
        **{k: kw[k] for k in keys},
    )
    cfg.prune.validate()
    cfg.mask.validate()
    plan = replace(cfg.prune.plan(kw["scope"] or crit.default_scope), ratios=named)
    calib, loss = kw["calib"], kw["loss"]
    width, inputs = _interface(model, ex, plan, criterion, calib, loss)
    data = _calib_data(calib, width, inputs) if loss is None else None
    ctx = _context(cfg, inputs, data, calib, kw["device"], kw["seed"], kw["calib_batches"], ignored, loss)
    crit.check(model)
    return Job(model, criterion, crit, plan, width, inputs, ctx)


def _shape(inputs) -> tuple | Example:
    """What ``counting.count`` takes: one image's shape, or the example itself."""
    return tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else inputs


def _interface(model: nn.Module, ex: Example, plan, criterion: str, calib, loss) -> tuple[int, object]:
    """(classes, inputs the pruner calls the model on): a classifier's logit width and its image batch,
    as always; for any other model 0 and the example (a plain tensor when it is one image batch).
    What only a classifier on one image batch supports is refused here, in the parameters' words."""
    out = handed.output(model, ex, "example_inputs")
    x = ex.plain
    logits = out[0] if isinstance(out, (tuple, list)) and out else out
    if x is not None and isinstance(logits, torch.Tensor) and logits.ndim == 2 and logits.is_floating_point():
        return int(logits.shape[-1]), x.detach().cpu().float()
    if x is None and (plan.round_to == "auto" or (isinstance(plan.target, Target) and plan.target.measured)):
        raise UsageError(
            "target_speedup, target_latency and round_to='auto' time the model on one image batch; "
            f"example_inputs are {ex.describe()}: give target_macs or sparsity",
            ("example_inputs", "target_speedup", "target_latency", "round_to"),
        )
    if criterion == "taylor" and loss is None:
        raise UsageError(
            f"criterion 'taylor' differentiates a loss; the model returns {handed.describe(out)}, not "
            "logits, so give loss=fn (fn(model, batch) -> scalar) and calib= batches it takes",
            ("loss", "criterion"),
        )
    if calib is not None and loss is None:
        raise UsageError(
            f"calib= feeds classification batches to criterion {criterion!r}, but the model returns "
            f"{handed.describe(out)}, not logits: use a data-free criterion (l1, magnitude, slimming, "
            "random) or criterion='taylor' with loss=",
            ("calib", "criterion"),
        )
    return 0, (x.detach().cpu().float() if x is not None else ex.to("cpu"))


def _subject(
    model, example_inputs, ignored_layers: Sequence, inplace: bool, ratios=None
) -> tuple[nn.Module, Example, Sequence, tuple]:
    """The module to prune (``model`` or, with ``inplace=False``, a copy; on the CPU), its example inputs,
    ``ignored_layers`` as they apply to that module, and ``ratios`` as (layer name, sparsity) pairs."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"prune() needs a torch.nn.Module, got a {type(model).__name__}")
    handed.check_module(model)
    x = as_example(example_inputs)
    named = layer_ratios(model, ratios)
    if not inplace:  # module instances of the original map onto the copy by their names
        names = {id(m): n for n, m in model.named_modules()}
        ignored_layers = [names.get(id(m), m) if isinstance(m, nn.Module) else m for m in ignored_layers]
        model = copy.deepcopy(model)
    model.cpu()
    return model, x, ignored_layers, named


def _target(sparsity, target_macs, target_speedup, target_latency) -> dict[str, float | None]:
    """The four target keywords; none given means ``sparsity=0.4``."""
    targets = {
        "sparsity": sparsity,
        "target_macs": target_macs,
        "target_speedup": target_speedup,
        "target_latency": target_latency,
    }
    if all(v is None for v in targets.values()):
        targets["sparsity"] = 0.4
    return targets


def _calib_data(calib, width: int, x) -> LoaderData | None:
    """``calib`` as the criteria's data, checked against the example batch's shape; None without it."""
    data = (
        LoaderData(calib, calib, num_classes=width, names=("calib", "calib")) if calib is not None else None
    )
    if data is not None:
        data.set_num_classes(width)
        if (data.in_channels, data.image_size) != tuple(x.shape[1:3]):
            raise UsageError(
                f"calib yields {data.in_channels}x{data.image_size}x{data.image_size} images, but "
                f"example_inputs are {'x'.join(map(str, x.shape[1:]))}: give both in the model's "
                "input shape",
                ("calib", "example_inputs"),
            )
    return data


def _context(
    cfg: CompressConfig, x, data, calib, device: str, seed: int, calib_batches: int, ignored_layers, loss=None
) -> PruneContext:
    """What the criterion and the shrink see of the call: inputs, data, device, seed, mask options."""
    return PruneContext(
        example_inputs=x,
        data=data,
        device=resolve_device(device),
        seed=seed,
        batch_size=getattr(calib, "batch_size", None) or 64,
        calib_batches=calib_batches,
        mask=cfg.mask_config(),
        ignored_layers=tuple(ignored_layers),
        loss=loss,
        batches=calib if loss is not None else None,
    )


def _remember(model: nn.Module, spec: ModelSpec, history: list) -> None:
    """Append ``history`` to what ``save`` will record of ``model`` (its spec from its first pruning)."""
    record = _RECORDS.get(model) or {"spec": spec, "history": []}
    record["history"] = record["history"] + history
    _RECORDS[model] = record


def _pruned(model: nn.Module, criterion: str, result, before, after) -> Pruned:
    """The call's answer: the module (in eval mode), what was removed, and the counts around it."""
    removed = {
        r["name"]: r["channels_before"] - r["channels_after"]
        for r in result.layers
        if r["channels_after"] < r["channels_before"]
    }
    return Pruned(
        model.eval(),
        criterion,
        result.sparsity,
        result.history,
        result.layers,
        removed,
        result.unprunable,
        {"params": before.params, "macs": before.macs},
        {"params": after.params, "macs": after.macs},
    )


def save(
    model: nn.Module,
    folder: str | Path,
    example_inputs=None,
    meta: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``folder/pruned.safetensors`` + ``pruned.json`` (weights and the pruning history; no pickle).

    A module pruned by ``prune`` or loaded by ``load`` knows its history and input shape; any other module
    is saved as dense and needs ``example_inputs`` for its input shape. ``load(folder, model=<dense
    module>)`` rebuilds it (and a registered, tv: or timm: model also without ``model=``)."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"save() needs a torch.nn.Module, got a {type(model).__name__}")
    record = _RECORDS.get(model)
    if record is None:
        if example_inputs is None:
            raise UsageError(
                "save(): this module was not pruned by filterprune.prune; pass example_inputs= "
                "so the saved model records its input shape"
            )
        x = _example(example_inputs)
        record = {
            "spec": ModelSpec(object_ref(model), _out_width(model, x), x.shape[1], x.shape[2]),
            "history": [],
        }
    folder = Path(folder)
    outputs.check_target(folder, overwrite)
    return outputs.write_folder(
        folder,
        lambda d: ckpt.save(model.cpu(), d / "pruned", record["spec"], record["history"], meta or {}),
        overwrite,
    )


def load(path: str | Path, trust_code: bool = False, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved model exactly (see ``prune.checkpoint.load``): registered, tv: and timm: models from
    the folder alone; a user factory's only with ``trust_code=True`` (it imports the user's code) or from the
    dense module handed over as ``model=``; a module saved from Python only from ``model=``."""
    net = ckpt.load(path, trust_code=trust_code, model=model)
    doc = ckpt.read_meta(Path(path))
    _RECORDS[net] = {"spec": doc["spec"], "history": list(doc["history"])}
    return net


def compress(
    cfg=None,
    *,
    model=None,
    train=None,
    test=None,
    num_classes: int | None = None,
    example_inputs=None,
    **fields,
) -> Compressed | None:
    """The whole pipeline on the user's objects; returns a ``Compressed``: the output folder (``.out``; the
    result itself is path-like) and the run's report (``.report``, with ``.dense_accuracy``,
    ``.pruned_accuracy``, ``.theoretical_speedup``, ``.latency``).

    ``model``: an ``nn.Module`` in hand (it is the dense baseline: ``epochs`` defaults to 0 here, more
    trains it further) or a model name (registered, ``tv:``, ``timm:``, ``file.py:fn``). ``train``/``test``:
    DataLoaders yielding ``(images, labels)``, used as they are (their batch size, augmentation and
    normalisation); without them ``dataset=`` names the data as on the command line. Other keywords are
    ``options of ``compress`` (criterion, sparsity, finetune_epochs, out, ...: the flags' names with '_'); or
    pass a ready ``CompressConfig``.
    """
    if cfg is not None and (model is not None or fields):
        raise UsageError("give either a CompressConfig or keyword fields, not both")
    if test is not None and train is None:
        raise UsageError("test= needs train= as well (the training split finetunes the pruned model)")
    module = model if isinstance(model, nn.Module) else None
    if model is not None and module is None and not isinstance(model, str):
        raise UsageError(f"model= must be a torch.nn.Module or a model name, got a {type(model).__name__}")
    if cfg is None:
        if module is not None:
            fields.setdefault("epochs", 0)
            if fields.get("bench_memory"):
                raise UsageError(
                    "bench_memory rebuilds each model in a fresh process, which a module handed "
                    "over in Python cannot be: leave it off"
                )
            if fields.get("scratch"):
                raise UsageError(
                    "scratch= retrains the pruned architecture from a fresh initialisation, which a "
                    "module in hand does not define: give the model by name"
                )
            for key in ("checkpoint", "weights", "model_args"):
                if fields.get(key) is not None:
                    raise UsageError(
                        f"{key}= applies to a model name; a module in hand already has its weights"
                    )
        cfg = CompressConfig.of(model=object_ref(module) if module is not None else model, **fields)
    if train is not None and cfg.data.dataset is not None:
        raise UsageError("give either DataLoaders (train=, test=) or dataset=, not both")
    data = LoaderData(train, test, num_classes=num_classes) if train is not None else None
    given = (
        Given(module, data, _example(example_inputs) if example_inputs is not None else None)
        if (module is not None or data is not None)
        else None
    )
    return run(cfg, given)

"""Where a run's model and images come from, resolved together: the model decides the input size
(its native one, 224 for ImageNet torchvision/timm models, 32 for the CIFAR ones, unless
``--image-size``), and pretrained weights decide the preprocessing (resize, crop, mean/std).

``prepare`` turns the config's ``model``/``model_args``/``weights``/``image_size``/``dataset`` into the
data and the ``ModelSpec`` of the run; ``check_probe`` proves on a freshly built model, before any
training, that it accepts the input and gives one output per class; ``describe`` is what the report
records about how to rebuild the dense model.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import torch.nn as nn

from . import handed, limits
from .data import ImageData, load_dataset, resolve_default_dataset
from .errors import UsageError
from .log import say
from .models import MAX_IMAGE_SIZE, ModelSpec, native_input
from .models import factory as user_factory
from .options import json_object
from .tracing import eval_mode

log = logging.getLogger(__name__)

IN_MEMORY_SIZE_HINT = "image_size applies to imagefolder: datasets (in-memory sets keep their own size)"


def model_ref(name: str) -> str:
    """The reference as recorded (a factory file made absolute) and, for a factory, trusted: the user
    handed it over in this process, so building it may import that code."""
    return user_factory.trust(name) if user_factory.is_factory_ref(name) else name


def short_name(name: str) -> str:
    """A folder-friendly model name: ``nets/my_net.py:build`` -> ``my_net-build``."""
    if user_factory.is_factory_ref(name):
        path, _, attr = name.rpartition(":")
        name = f"{Path(path).stem if path.endswith('.py') else path.rsplit('.', 1)[-1]}-{attr}"
    return re.sub(r"[^\w.+-]", "-", name)


def validate_model(model) -> None:
    """A ``config.Model``'s references, checked without training (a factory is imported: the user gave it)."""
    from .models import check_model_ref

    if not model.name.startswith("object:"):  # a module in hand (compress(model=net)) has nothing to check here
        check_model_ref(model_ref(model.name))
    if model.weights is not None and not model.name.startswith(("tv:", "timm:")):
        raise UsageError(f"weights applies to tv:<name> and timm:<name> models, not {model.name!r} "
                         "(give a user model's weights with checkpoint)", ("weights", "checkpoint"))
    if model.weights is not None:
        native_input(model.name, model.weights)  # an unknown weights name fails here


def load_data(dataset: str | None, data_root: str, val_fraction: float = 0.0, seed: int = 0, **options) -> ImageData:
    """Load the named dataset, or the default one with a notice saying which it is; ``val_fraction`` of
    the training images (drawn with ``seed``) become the validation split that chooses kept epochs.
    ``options`` reach streamed datasets (image size, preprocessing: see ``prepare``)."""
    if dataset is None:
        dataset, notice = resolve_default_dataset(data_root)
        if notice:
            say(f"notice: {notice}")
    data = load_dataset(dataset, data_root, seed=seed, **options).carve_val(val_fraction, seed)
    say(f"data: {data.describe()}")
    return data


def spec_for(model: str, data: ImageData) -> ModelSpec:
    """The spec of a registered or tv/timm model on ``data`` (its classes, channels and size)."""
    return ModelSpec(model, data.num_classes, data.in_channels, data.image_size)


def prepare(cfg, given: Given | None = None) -> tuple[object, ModelSpec, dict]:
    """(data, spec, info) of a ``CompressConfig``: the data at the model's input size and the run's ModelSpec.

    ``info`` holds what the model's native input and weights said. ``given`` DataLoaders are the data
    as they are; a given module names the spec ``object:<class>``."""
    m, d = cfg.model, cfg.data
    ref = model_ref(m.name)
    if given is not None and given.data is not None:
        data = given.data
        if given.model is None and not data.class_names:
            raise UsageError("with your own DataLoaders and a model name, pass num_classes= (or give the dataset "
                             "a `classes` list)")
        spec = _given_spec(given, data, ref, json_object(m.model_args))
        _check_class_arg(spec)
        return data, spec, {}
    native = native_input(ref, m.weights)
    size = d.image_size or native["image_size"]
    if size < native.get("min_size", 1):
        raise UsageError(f"image_size {size} is below the minimum input of {m.name} ({native['min_size']} px)",
                         ("image_size",))
    resize = native.get("resize_size")
    if resize and size != native["image_size"]:
        resize = round(size * resize / native["image_size"])
    _check_image_size(size)
    options = {"image_size": size, "resize_size": resize, "train_subset": d.train_subset, "workers": d.workers}
    if "mean" in native:
        options.update(mean=native["mean"], std=native["std"])
    data = load_data(d.dataset, d.data_root, d.val_fraction, cfg.train.seed, **options)
    if d.image_size and data.image_size != d.image_size:
        raise UsageError(f"{IN_MEMORY_SIZE_HINT}; {data.name} is {data.image_size}x{data.image_size}", ("image_size",))
    if "mean" in native and not hasattr(data, "make_loader"):  # in memory: normalise as the weights expect
        data.mean, data.std = tuple(native["mean"]), tuple(native["std"])
    if given is not None and given.model is not None:
        return data, _given_spec(given, data, ref, {}), native
    spec = ModelSpec(ref, data.num_classes, data.in_channels, data.image_size, json_object(m.model_args),
                     _weights_name(native, m.weights))
    _check_class_arg(spec)
    return data, spec, native


def _check_class_arg(spec: ModelSpec) -> None:
    """The class count comes from the data; a model_args ``num_classes`` that says otherwise is refused
    (it would be overridden, or build a model with the wrong number of outputs)."""
    asked = spec.args.get("num_classes", spec.num_classes)
    if asked != spec.num_classes:
        raise UsageError(f"model_args sets num_classes={limits.show(asked)}, but the data has {spec.num_classes} "
                         "classes; filterprune passes the data's class count: leave num_classes out of model_args",
                         ("model_args",))


def _check_image_size(size: int) -> None:
    """Before any image is decoded at ``size``: within what a saved run may describe, and one RGB input
    within the memory budget (the model's own activations are bounded once it is known)."""
    if size > MAX_IMAGE_SIZE:
        raise UsageError(f"image_size {size} is over {MAX_IMAGE_SIZE}, the largest input a saved run may describe",
                         ("image_size",))
    why = limits.over_trace_budget(3 * size * size)
    if why:
        raise UsageError(f"image_size {size} is too large: {why}", ("image_size",))


def _weights_name(native: dict, weights: str | None) -> str | None:
    return native.get("weights", weights) if weights is not None else None


@torch.no_grad()
def check_probe(model: nn.Module, spec: ModelSpec, ignore_layers=()) -> None:
    """Before any training: the model runs on the data's input shape, gives one logit per class, and
    every ``--ignore-layers`` name exists."""
    from .pruning.graph import resolve_ignored

    shape = (1, spec.in_channels, spec.image_size, spec.image_size)
    try:
        with eval_mode(model):
            out = model(torch.randn(*shape))
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        if spec.args:  # the arguments may be at fault as much as the size: name both
            raise UsageError(f"{spec.name} built with model_args {limits.show(spec.args, 120)} does not run on "
                             f"{shape[1]}x{shape[2]}x{shape[3]} inputs ({why}); check model_args, or choose another "
                             "image_size or dataset", ("model_args", "image_size")) from None
        raise UsageError(f"{spec.name} does not run on {shape[1]}x{shape[2]}x{shape[3]} inputs ({why}); choose "
                         "another image_size or dataset", ("image_size",)) from None
    out = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != spec.num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        hint = (" (its factory takes no num_classes argument: give it one, or set the width with --model-args)"
                if user_factory.is_factory_ref(spec.name)
                and not user_factory.takes_num_classes(user_factory.resolve(spec.name)) else "")
        raise UsageError(f"{spec.name} outputs {got} for one image, but the data has {spec.num_classes} classes"
                         f"{hint}")
    resolve_ignored(model, ignore_layers)


def describe(spec: ModelSpec, native: dict, loaded: dict | None, checkpoint: str | None) -> dict:
    """How to rebuild the dense model, as the report records it."""
    kind = ("torchvision" if spec.name.startswith("tv:") else "timm" if spec.name.startswith("timm:")
            else "factory" if user_factory.is_factory_ref(spec.name) else "registered")
    d = {"kind": kind, "name": spec.name, "args": spec.args, "weights": spec.weights, "checkpoint": checkpoint,
         "num_classes": spec.num_classes, "input_shape": [spec.in_channels, spec.image_size, spec.image_size]}
    if kind == "factory":
        d["code_sha256"] = user_factory.code_digest(spec.name)
        d["rebuild"] = "filterprune.load(OUT, trust_code=True) imports the factory; or filterprune.load(OUT, model=<dense module>)"
    if loaded:
        d.update({k: v for k, v in loaded.items() if k != "model"})
    return d


def load_checkpoint_weights(model: nn.Module, state: dict, spec: ModelSpec, source: str) -> dict:
    """Weights of a user's checkpoint into ``model``; for tv:/timm: models a checkpoint with another
    class count (ImageNet's 1000) keeps everything but the output layers, which stay fresh (and are
    trained). Returns what was replaced."""
    from . import serialization as ckpt
    from .pruning.graph import build_graph, output_layers

    own = model.state_dict()
    mismatched = {k for k in own if k in state and state[k].shape != own[k].shape}
    if spec.name.startswith(("tv:", "timm:")) and mismatched and set(state) == set(own):
        DG = build_graph(model, torch.randn(1, spec.in_channels, spec.image_size, spec.image_size))
        names = {id(m): n for n, m in model.named_modules()}
        heads = {f"{names[id(m)]}.{p}" for m in output_layers(DG) for p, _ in m.named_parameters(recurse=False)}
        if mismatched <= heads:
            ckpt.load_weights(model, {**state, **{k: own[k] for k in mismatched}}, source)
            log.info("checkpoint %s: classifier head %s replaced (another class count)", source, sorted(mismatched))
            return {"head_replaced": sorted(mismatched)}
    ckpt.load_weights(model, state, source)
    return {}


# ------------------------------------------------------------------------- objects handed over in Python
class Given:
    """What ``filterprune.compress(model=..., train=..., test=...)`` was handed: a dense module (the
    baseline), and/or DataLoaders (``data.stream.LoaderData``)."""

    def __init__(self, model: nn.Module | None = None, data=None, example_inputs: torch.Tensor | None = None):
        if model is not None and not isinstance(model, nn.Module):
            raise UsageError(f"model= must be a torch.nn.Module or a model name, got a {type(model).__name__}")
        if model is not None:
            handed.check_module(model)
        self.model, self.data, self.example_inputs = model, data, example_inputs


def probe_model(spec: ModelSpec, given: Given | None) -> nn.Module:
    """A fresh model for the checks before training: built from the spec, or a copy of the module in hand."""
    import copy

    from .models import build_model

    return copy.deepcopy(given.model).cpu() if given is not None and given.model is not None else build_model(spec)


def given_baseline(model: nn.Module, data, cfg, device, train_fn) -> tuple[nn.Module, dict]:
    """The module in hand as the dense baseline; ``cfg.epochs`` > 0 trains it further first (in place)."""
    info = {"given": f"{type(model).__module__}.{type(model).__qualname__} handed to compress(model=...)"}
    if cfg.epochs:
        info["history"] = train_fn(model.to(device), data, cfg, device, desc="train given model")
        info["train"] = cfg.to_dict()
    return model, info


def _given_spec(given: Given, data, ref: str, args: dict) -> ModelSpec:
    if given.model is not None:
        shape = given.example_inputs.shape if given.example_inputs is not None else \
            (1, data.in_channels, data.image_size, data.image_size)
        what = "example_inputs" if given.example_inputs is not None else getattr(data, "names", ("train",))[0]
        out = handed.logits(given.model.cpu(), torch.randn(1, *shape[1:]), what)
        if hasattr(data, "set_num_classes"):
            data.set_num_classes(int(out.shape[-1]))
    return ModelSpec(ref, data.num_classes, data.in_channels, data.image_size, args, None)

"""A run's inputs: the data and the ``ModelSpec`` that the options name, or that
``filterprune.compress(model=..., train=..., test=...)`` hands over (``Given``), resolved together, and
the probe checks that prove them compatible before any training.

The model decides the input size (its native one, 224 for ImageNet torchvision/timm models, 32 for the
CIFAR ones, unless ``--image-size``), and pretrained weights decide the preprocessing (resize, crop,
mean/std). ``prepare`` turns the config's ``model``/``model_args``/``weights``/``image_size``/``dataset``
into the data and the spec of the run; ``check_probe`` proves on a freshly built model (``probe_model``),
before any training, that it accepts the input and gives one output per class.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn as nn

from . import handed, limits
from .data import load_data
from .data.stream import LoaderData, typical_side
from .errors import UsageError
from .log import say
from .models import MAX_IMAGE_SIZE, ModelSpec, build_model, native_input
from .models.factory import is_factory_ref, resolve, takes_num_classes
from .models.refs import model_ref
from .options import json_object
from .pruning.graph import resolve_ignored
from .tracing import eval_mode

IN_MEMORY_SIZE_HINT = (
    "image_size applies to imagefolder: and synthetic (other in-memory sets keep their own size)"
)


class Given:
    """What ``filterprune.compress(model=..., train=..., test=...)`` was handed: a dense module (the
    baseline), and/or DataLoaders (``data.stream.LoaderData``)."""

    def __init__(self, model: nn.Module | None = None, data=None, example_inputs: torch.Tensor | None = None):
        if model is not None and not isinstance(model, nn.Module):
            raise UsageError(
                f"model= must be a torch.nn.Module or a model name, got a {type(model).__name__}"
            )
        if model is not None:
            handed.check_module(model)
        self.model, self.data, self.example_inputs = model, data, example_inputs


def prepare(cfg, given: Given | None = None) -> tuple[object, ModelSpec, dict]:
    """(data, spec, info) of a ``CompressConfig``: the data at the model's input size and the run's ModelSpec.

    ``info`` holds what the model's native input and weights said. ``given`` DataLoaders are the data
    as they are; a given module names the spec ``object:<class>``."""
    m, d = cfg.model, cfg.data
    ref = model_ref(m.name)
    if given is not None and given.data is not None:
        data = given.data
        if given.model is None and not data.class_names:
            raise UsageError(
                "with your own DataLoaders and a model name, pass num_classes= (or give the "
                "dataset a `classes` list)"
            )
        spec = _given_spec(given, data, ref, json_object(m.model_args))
        _check_class_arg(spec)
        return data, spec, {}
    native = native_input(ref, m.weights)
    size = d.image_size or _folder_size(d.dataset, native, m.weights) or native["image_size"]
    if size < native.get("min_size", 1):
        raise UsageError(
            f"image_size {size} is below the minimum input of {m.name} ({native['min_size']} px)",
            ("image_size",),
        )
    resize = native.get("resize_size")
    if resize and size != native["image_size"]:
        resize = round(size * resize / native["image_size"])
    _check_image_size(size)
    options = {
        "image_size": size,
        "resize_size": resize,
        "train_subset": d.train_subset,
        "workers": d.workers,
    }
    if "mean" in native:
        options.update(mean=native["mean"], std=native["std"])
    data = load_data(d.dataset, d.data_root, d.val_fraction, cfg.train.seed, **options)
    if d.image_size and data.image_size != d.image_size:
        raise UsageError(
            f"{IN_MEMORY_SIZE_HINT}; {data.name} is {data.image_size}x{data.image_size}", ("image_size",)
        )
    if "mean" in native and not data.streamed:  # in memory: normalise as the weights expect
        data.mean, data.std = tuple(native["mean"]), tuple(native["std"])
    if given is not None and given.model is not None:
        return data, _given_spec(given, data, ref, {}), native
    spec = ModelSpec(
        ref,
        data.num_classes,
        data.in_channels,
        data.image_size,
        json_object(m.model_args),
        _weights_name(native, m.weights),
    )
    _check_class_arg(spec)
    return data, spec, native


def _check_class_arg(spec: ModelSpec) -> None:
    """The class count comes from the data; a model_args ``num_classes`` that says otherwise is refused
    (it would be overridden, or build a model with the wrong number of outputs)."""
    asked = spec.args.get("num_classes", spec.num_classes)
    if asked != spec.num_classes:
        raise UsageError(
            f"model_args sets num_classes={limits.show(asked)}, but the data has {spec.num_classes} "
            "classes; filterprune passes the data's class count: leave num_classes out of model_args",
            ("model_args",),
        )


def _check_image_size(size: int) -> None:
    """Before any image is decoded at ``size``: within what a saved run may describe, and one RGB input
    within the memory budget (the model's own activations are bounded once it is known)."""
    if size > MAX_IMAGE_SIZE:
        raise UsageError(
            f"image_size {size} is over {MAX_IMAGE_SIZE}, the largest input a saved run may describe",
            ("image_size",),
        )
    why = limits.over_trace_budget(3 * size * size)
    if why:
        raise UsageError(f"image_size {size} is too large: {why}", ("image_size",))


def _weights_name(native: dict, weights: str | None) -> str | None:
    return native.get("weights", weights) if weights is not None else None


@torch.no_grad()
def check_probe(model: nn.Module, spec: ModelSpec, ignore_layers=()) -> None:
    """Before any training: the model runs on the data's input shape, gives one logit per class, and
    every ``--ignore-layers`` name exists."""
    shape = (1, spec.in_channels, spec.image_size, spec.image_size)
    try:
        with eval_mode(model):
            out = model(torch.randn(*shape))
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        if spec.args:  # the arguments may be at fault as much as the size: name both
            raise UsageError(
                f"{spec.name} built with model_args {limits.show(spec.args, 120)} does not run on "
                f"{shape[1]}x{shape[2]}x{shape[3]} inputs ({why}); check model_args, or choose another "
                "image_size or dataset",
                ("model_args", "image_size"),
            ) from None
        raise UsageError(
            f"{spec.name} does not run on {shape[1]}x{shape[2]}x{shape[3]} inputs ({why}); choose "
            "another image_size or dataset",
            ("image_size",),
        ) from None
    out = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != spec.num_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        hint = (
            " (its factory takes no num_classes argument: give it one, or set the width with --model-args)"
            if is_factory_ref(spec.name) and not takes_num_classes(resolve(spec.name))
            else ""
        )
        raise UsageError(
            f"{spec.name} outputs {got} for one image, but the data has {spec.num_classes} classes{hint}"
        )
    resolve_ignored(model, ignore_layers)


def probe_model(spec: ModelSpec, given: Given | None) -> nn.Module:
    """A fresh model for the checks before training: built from the spec, or a copy of the module in hand."""
    if given is not None and given.model is not None:
        return copy.deepcopy(given.model).cpu()
    return build_model(spec)


def _folder_size(dataset: str | None, native: dict, weights: str | None) -> int | None:
    """An image folder of pictures smaller than the model's native input trains at their size (no
    upsampling of 64-px photos to 224) unless pretrained weights expect the native size; either way the
    user is told, with the option that chooses."""
    if not dataset or not dataset.startswith("imagefolder:"):
        return None
    side = typical_side(Path(dataset.split(":", 1)[1]))
    if side is None or side >= native["image_size"]:
        return None
    if weights is not None:
        say(
            f"note: the images are about {side} px, upsampled to {native['image_size']} "
            f"as the pretrained weights expect (--image-size {side} trains at their size)"
        )
        return None
    say(
        f"note: the images are about {side} px: training at {side} instead of the model's native "
        f"{native['image_size']} (--image-size to choose)"
    )
    return max(side, native.get("min_size", 1))


def _given_spec(given: Given, data, ref: str, args: dict) -> ModelSpec:
    if given.model is not None:
        shape = (
            given.example_inputs.shape
            if given.example_inputs is not None
            else (1, data.in_channels, data.image_size, data.image_size)
        )
        what = "example_inputs" if given.example_inputs is not None else getattr(data, "names", ("train",))[0]
        out = handed.logits(given.model.cpu(), torch.randn(1, *shape[1:]), what)
        if isinstance(data, LoaderData):  # the user's loaders: the class count is the model's
            data.set_num_classes(int(out.shape[-1]))
    return ModelSpec(ref, data.num_classes, data.in_channels, data.image_size, args, None)

"""Model registry: ``build_model(ModelSpec)`` builds any registered architecture.

A model file registers a builder ``fn(num_classes, in_channels, image_size) -> nn.Module``.
Parameterised names: ``tv:<torchvision name>`` builds any torchvision classifier, ``timm:<name>`` any timm
model (the optional ``timm`` extra), ``yolo:<model yaml>`` an ultralytics YOLO detector (the ``yolo``
extra). A user's own factory is named ``path/to/file.py:fn`` or ``package.module:fn`` (``factory.py``);
building one imports the user's code, so it is allowed only for references the user handed over in this
process (the command line, ``compress(model=...)``) or with ``trust_code`` — a saved folder received from
elsewhere never runs code by being loaded.

``build_model`` builds the *architecture* (random init). ``initial_model`` is the model a run starts
from: the architecture plus pretrained weights when the spec names some (``tv:<name>`` with ``weights``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import limits
from ..errors import UsageError
from . import timm_models, torchvision_models, yolo
from .factory import build_factory, is_factory_ref, resolve
from .registry import MAX_IMAGE_SIZE, MODELS, ModelSpec, is_model_ref

__all__ = [
    "MAX_IMAGE_SIZE",
    "MODELS",
    "ModelSpec",
    "activation_sizes_of",
    "build_model",
    "check_finite",
    "check_model_ref",
    "initial_model",
    "is_model_ref",
    "native_input",
    "sizes_on_meta",
]


def check_model_ref(name: str, args: dict | None = None) -> None:
    """Fail early (UsageError) on a name that cannot be built: unknown, or a factory that is not there."""
    if is_factory_ref(name):
        resolve(name)
    elif yolo.is_yolo(name):
        yolo.resolve(name)  # a URL, an unknown yaml, ultralytics missing: refused before anything runs
    else:
        MODELS.get(name)


def build_model(spec: ModelSpec, trust_code: bool = False) -> nn.Module:
    """The dense architecture (random init). A factory reference runs user code: allowed when the user
    handed it over in this process (``factory.trust``) or with ``trust_code``."""
    if is_factory_ref(spec.name):
        return build_factory(spec, trust_code)
    builder = MODELS.get(spec.name)
    _, arg = MODELS.split(spec.name)
    kwargs = {"args": spec.args, "weights": spec.weights} if arg is not None else {}
    if arg is not None:
        return builder(arg, spec.num_classes, spec.in_channels, spec.image_size, **kwargs)
    if spec.args:
        raise UsageError(f"{spec.name} takes no --model-args")
    return builder(spec.num_classes, spec.in_channels, spec.image_size)


def initial_model(spec: ModelSpec) -> tuple[nn.Module, dict]:
    """The model a run starts from, and what was loaded into it (``{}`` for a random init): the pretrained
    weights when the spec names some, with the classifier head replaced when the class counts differ."""
    if spec.weights is not None and spec.name.startswith("tv:"):
        return torchvision_models.pretrained(spec)
    if spec.weights is not None and spec.name.startswith("timm:"):
        return timm_models.pretrained(spec)
    return build_model(spec), {}


def native_input(name: str, weights: str | None = None) -> dict:
    """The input a model is made for: ``image_size``, ``min_size``, and with pretrained weights their
    preprocessing (``mean``, ``std``, ``resize_size``). Registered models are CIFAR-scale (32)."""
    if name.startswith("tv:"):
        return torchvision_models.native_input(name[3:], weights)
    if name.startswith("timm:"):
        return timm_models.native_input(name[5:], weights)
    if is_factory_ref(name):
        return {"image_size": 224, "min_size": 1}
    if yolo.is_yolo(name):
        return {"image_size": 640, "min_size": 32}
    return {"image_size": 32, "min_size": 1}


def activation_sizes_of(spec: ModelSpec) -> tuple[int, int]:
    """``limits.activation_sizes`` of the dense architecture ``spec`` describes, built on the meta device (so
    a description that asks for a huge model costs nothing to check)."""
    with torch.device("meta"):
        model = build_model(spec)
    return limits.activation_sizes(model, (spec.in_channels, spec.image_size, spec.image_size))


def sizes_on_meta(spec: ModelSpec) -> tuple[int, int, int] | None:
    """(parameters, largest, total activation values per sample) of the dense architecture ``spec``
    describes, built on the meta device: nothing is allocated, whatever the sizes. None when the model
    cannot be built there (a factory that computes with its tensors while it builds)."""
    try:
        with torch.device("meta"):
            model = build_model(spec)
    except Exception:  # noqa: BLE001 - no meta kernel, or a bad build: the real build says which, then counts
        return None
    params = sum(p.numel() for p in model.parameters())
    return (params, *limits.activation_sizes(model, (spec.in_channels, spec.image_size, spec.image_size)))

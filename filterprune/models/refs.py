"""A run's model reference: as recorded (a factory file made absolute, and trusted: the user handed it
over), as a folder-friendly name, checked without training, as the ``ModelSpec`` on the run's data,
and as the report describes it (``describe``: how to rebuild the dense model)."""

from __future__ import annotations

import re
from pathlib import Path

from ..data.images import ImageData
from ..errors import UsageError
from . import check_model_ref, factory, native_input, yolo
from .registry import ModelSpec


def model_ref(name: str) -> str:
    """The reference as recorded (a factory file made absolute) and, for a factory, trusted: the user
    handed it over in this process, so building it may import that code. A local YOLO yaml is made
    absolute too."""
    if yolo.is_yolo(name):
        return yolo.canonical(name)
    return factory.trust(name) if factory.is_factory_ref(name) else name


def short_name(name: str) -> str:
    """A folder-friendly model name: ``nets/my_net.py:build`` -> ``my_net-build``."""
    if factory.is_factory_ref(name):
        path, _, attr = name.rpartition(":")
        name = f"{Path(path).stem if path.endswith('.py') else path.rsplit('.', 1)[-1]}-{attr}"
    return re.sub(r"[^\w.+-]", "-", name)


def validate_model(model) -> None:
    """A ``config.Model``'s references, checked without training (a factory is imported: the user gave it)."""
    if not model.name.startswith("object:"):  # a module in hand (compress(model=net)): nothing to check here
        check_model_ref(model_ref(model.name))
    if model.weights is not None and not model.name.startswith(("tv:", "timm:")):
        raise UsageError(
            f"weights applies to tv:<name> and timm:<name> models, not {model.name!r} "
            "(give a user model's weights with checkpoint)",
            ("weights", "checkpoint"),
        )
    if model.weights is not None:
        native_input(model.name, model.weights)  # an unknown weights name fails here


def spec_for(model: str, data: ImageData) -> ModelSpec:
    """The spec of a registered or tv/timm model on ``data`` (its classes, channels and size)."""
    return ModelSpec(model, data.num_classes, data.in_channels, data.image_size)


def describe(spec: ModelSpec, native: dict, loaded: dict | None, checkpoint: str | None) -> dict:
    """How to rebuild the dense model, as the report records it."""
    kind = (
        "torchvision"
        if spec.name.startswith("tv:")
        else "timm"
        if spec.name.startswith("timm:")
        else "ultralytics"
        if yolo.is_yolo(spec.name)
        else "factory"
        if factory.is_factory_ref(spec.name)
        else "registered"
    )
    d = {
        "kind": kind,
        "name": spec.name,
        "args": spec.args,
        "weights": spec.weights,
        "checkpoint": checkpoint,
        "num_classes": spec.num_classes,
        "input_shape": [spec.in_channels, spec.image_size, spec.image_size],
    }
    if kind == "ultralytics":
        d["ultralytics"] = yolo.version()
        if (digest := yolo.yaml_digest(spec.name)) is not None:
            d["yaml_sha256"] = digest
    if kind == "factory":
        d["code_sha256"] = factory.code_digest(spec.name)
        d["rebuild"] = (
            "filterprune.load(OUT, trust_code=True) imports the factory; or "
            "filterprune.load(OUT, model=<dense module>)"
        )
    if loaded:
        d.update({k: v for k, v in loaded.items() if k != "model"})
    return d

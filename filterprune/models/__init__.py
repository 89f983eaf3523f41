"""Model registry: ``build_model(ModelSpec)`` builds any registered architecture.

A model file registers a builder ``fn(num_classes, in_channels, image_size) -> nn.Module``.
Parameterised names: ``tv:<torchvision name>`` builds any torchvision classifier.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch.nn as nn

from ..registry import Registry

MODELS: Registry = Registry("model", prefixes=("tv:",))


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the dense architecture; saved next to every checkpoint."""

    name: str
    num_classes: int = 10
    in_channels: int = 3
    image_size: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """From an untrusted JSON object: types and ranges checked, so a file cannot ask for a huge model."""
        spec = cls(name=d["name"], num_classes=d["num_classes"], in_channels=d["in_channels"],
                   image_size=d["image_size"])
        if not isinstance(spec.name, str) or spec.name not in MODELS:
            raise ValueError(f"unknown model {spec.name!r}")
        for field, hi in (("num_classes", 100_000), ("in_channels", 64), ("image_size", 4096)):
            v = getattr(spec, field)
            if type(v) is not int or not 1 <= v <= hi:
                raise ValueError(f"{field} must be an integer in [1, {hi}], got {v!r}")
        return spec


def build_model(spec: ModelSpec) -> nn.Module:
    builder = MODELS.get(spec.name)
    _, arg = MODELS.split(spec.name)
    if arg is not None:
        return builder(arg, spec.num_classes, spec.in_channels, spec.image_size)
    return builder(spec.num_classes, spec.in_channels, spec.image_size)


from . import mlp, resnet_cifar, torchvision_models, vgg  # noqa: E402,F401  (registration)

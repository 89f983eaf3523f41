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
        return cls(name=str(d["name"]), num_classes=int(d["num_classes"]),
                   in_channels=int(d["in_channels"]), image_size=int(d["image_size"]))


def build_model(spec: ModelSpec) -> nn.Module:
    builder = MODELS.get(spec.name)
    _, arg = MODELS.split(spec.name)
    if arg is not None:
        return builder(arg, spec.num_classes, spec.in_channels, spec.image_size)
    return builder(spec.num_classes, spec.in_channels, spec.image_size)


from . import mlp, resnet_cifar, torchvision_models, vgg  # noqa: E402,F401  (registration)

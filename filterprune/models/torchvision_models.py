"""Any torchvision classifier as ``tv:<name>`` (random init; no weights are downloaded).

``num_classes`` is passed to the builder; auxiliary heads are switched off because they only run in
training mode and would make the traced graph differ from the deployed one. The first conv is
re-created when the data has other than 3 input channels.
"""
import torch.nn as nn
import torchvision

from ..errors import UsageError
from . import MODELS

_NO_AUX = {"googlenet", "inception_v3"}


def classifier_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


@MODELS.register("tv:", help="any torchvision classifier, e.g. tv:mobilenet_v2 (see `list models --all`)")
def torchvision_model(name, num_classes, in_channels, image_size):
    if name not in classifier_names():
        raise UsageError(f"unknown torchvision classifier {name!r}; valid: {', '.join(classifier_names())}")
    kwargs = {"weights": None, "num_classes": num_classes}
    if name in _NO_AUX:
        kwargs.update(aux_logits=False, init_weights=True)
    model = torchvision.models.get_model(name, **kwargs)
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(parent, child_name, nn.Conv2d(
                    in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                    child.dilation, child.groups, child.bias is not None))
                return

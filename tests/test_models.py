import pytest
import torch

from filterprune.errors import UsageError
from filterprune.models import MODELS, ModelSpec, build_model

NAMES = [n for n in MODELS.names() if not n.startswith(("tv:", "timm:", "yolo:"))] + [
    "tv:mobilenet_v2",
    "tv:resnet18",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_model_builds_and_classifies(name):
    spec = ModelSpec(
        name, num_classes=7, in_channels=1 if name == "mlp" else 3, image_size=28 if name == "mlp" else 32
    )
    model = build_model(spec).eval()
    out = model(torch.randn(2, spec.in_channels, spec.image_size, spec.image_size))
    assert out.shape == (2, 7)


def test_vgg16_is_the_bn_variant_and_lottery_is_not():
    bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in build_model(ModelSpec("vgg16")).modules())
    lottery = build_model(ModelSpec("vgg16-lottery"))
    assert bn == 13
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lottery.modules())
    assert all(m.bias is not None for m in lottery.modules() if isinstance(m, torch.nn.Conv2d))


def test_torchvision_adapter_grey_input_and_unknown_name():
    m = build_model(ModelSpec("tv:mobilenet_v2", 10, in_channels=1, image_size=32)).eval()
    assert m(torch.randn(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(UsageError, match="unknown torchvision classifier"):
        build_model(ModelSpec("tv:not_a_net"))


def test_unknown_model_lists_valid_names():
    with pytest.raises(UsageError, match="vgg16.*|resnet56"):
        build_model(ModelSpec("vgg17"))

"""Structure after pruning: channel counts, coupled layers, floors, rounding, and odd architectures."""

import math
import warnings

import pytest
import torch
import torch.nn as nn

from filterprune.criteria import PruneContext, make_criterion
from filterprune.errors import UsageError
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune
from filterprune.pruning.plan import allocate

X32 = torch.randn(1, 3, 32, 32)


def _pruned(name, criterion="l1", **plan):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name))
    dense_convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    res = prune(
        model, make_criterion(criterion), PlanConfig(**{"target": 0.4, **plan}), PruneContext(X32), 10
    )
    return model, dense_convs, res


def test_vgg16_layerwise_keeps_60_percent_of_every_conv():
    model, dense, res = _pruned("vgg16")
    after = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert after == [math.ceil(0.6 * c) for c in dense]  # 64->39, 128->77, 256->154, 512->308
    assert model.classifier.out_features == 10 and model.classifier.in_features == 308
    assert model.eval()(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert {r["name"]: r["channels_after"] for r in res.layers}["features.0"] == 39


def test_resnet56_residual_stages_stay_coupled():
    model, _, _ = _pruned("resnet56")
    for stage in (model.layers[0:9], model.layers[9:18], model.layers[18:27]):
        widths = {b.conv2.out_channels for b in stage}
        assert len(widths) == 1  # residual adds force one width per stage
    assert model.fc.in_features == model.layers[-1].conv2.out_channels
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", ["tv:mobilenet_v2", "tv:densenet121", "tv:regnet_x_400mf", "resnet50"])
@pytest.mark.parametrize("criterion", ["l1", "magnitude", "slimming", "random"])
def test_every_criterion_prunes_odd_architectures(name, criterion):
    model, dense, _ = _pruned(name, criterion, scope="layerwise")
    after = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    assert after < sum(dense)
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_round_to_gives_multiples():
    model, dense, _ = _pruned("vgg16", round_to=16)
    for c, d in zip([m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)], dense):
        assert c % 16 == 0 and c <= d


def test_global_scope_floors_a_collapsing_layer():
    scores = [torch.full((100,), 0.01), torch.linspace(1, 2, 100)]
    with pytest.warns(UserWarning, match="floor"):
        keep = allocate(scores, PlanConfig(0.5, scope="global", layer_floor=0.1))
    assert keep == [10, 100]  # the low layer would lose everything; it keeps its 10% floor
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert allocate(scores, PlanConfig(0.4, scope="layerwise")) == [60, 60]


def test_classifier_is_never_pruned():
    model, _, res = _pruned("mlp", sparsity=0.9) if False else (None, None, None)
    torch.manual_seed(0)
    mlp = build_model(ModelSpec("mlp", 10, 1, 28))
    prune(mlp, make_criterion("l1"), PlanConfig(0.9), PruneContext(torch.randn(1, 1, 28, 28)), 10)
    assert mlp[-1].out_features == 10 and all(m.out_features >= 10 for m in mlp if isinstance(m, nn.Linear))


@pytest.mark.parametrize(
    "bad",
    [
        dict(target=1.0),
        dict(target=-0.1),
        dict(target=0.4, scope="everywhere"),
        dict(target=0.4, round_to=0),
        dict(target=0.4, layer_floor=0),
    ],
)
def test_bad_plan_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        PlanConfig(**bad)

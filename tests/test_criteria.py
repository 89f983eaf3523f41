"""Each criterion's meaning, pinned on hand-set networks: which channels go, and why."""

import pytest
import torch
import torch.nn as nn

from filterprune.criteria import PruneContext, make_criterion
from filterprune.errors import UsageError
from filterprune.pruning import PlanConfig, prune
from filterprune.pruning.graph import build_graph, channel_groups, output_layers


class TwoConv(nn.Module):
    """conv1 (2 filters) -> BN -> conv2 -> pool -> fc(3 classes)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 4, 1, bias=False)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv1.weight[:, 0, 0, 0] = torch.tensor([3.0, 1.0])  # L1: channel 0 looks important
            self.conv2.weight.fill_(0.0)
            self.conv2.weight[:, 0] = 0.01  # ...but the next layer barely reads channel 0
            self.conv2.weight[:, 1] = 10.0
            self.bn.weight.copy_(torch.tensor([0.2, 0.9]))

    def forward(self, x):
        x = self.conv2(torch.relu(self.bn(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def _conv1_scores(name):
    model = TwoConv()
    DG = build_graph(model, torch.randn(1, 1, 4, 4))
    groups = channel_groups(DG, output_layers(DG))
    crit = make_criterion(name)
    crit.prepare(model, PruneContext(torch.randn(1, 1, 4, 4)))
    (g,) = [g for g in groups if g.root is model.conv1]
    return crit.score(g.group)


def test_l1_is_the_conv_own_filter_norm():
    assert torch.allclose(_conv1_scores("l1"), torch.tensor([3.0, 1.0]))


def test_magnitude_sees_the_coupled_layers_and_ranks_differently_from_l1():
    s = _conv1_scores("magnitude")
    # per-layer L2 norms, averaged: conv1 out rows, BN (gamma, beta), conv2 input columns
    conv1 = torch.tensor([3.0, 1.0])
    bn = torch.tensor([0.2, 0.9])  # beta is 0
    conv2 = torch.tensor([0.01, 10.0]) * 2  # 4 output rows -> norm = 2 * value
    assert torch.allclose(s, (conv1 + bn + conv2) / 3, atol=1e-5)
    assert _conv1_scores("l1").argmax() == 0 and s.argmax() == 1


def test_slimming_is_bn_gamma_magnitude():
    assert torch.allclose(_conv1_scores("slimming"), torch.tensor([0.2, 0.9]))


def test_slimming_refuses_bn_free_networks():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
    net(torch.randn(1, 3, 8, 8))
    with pytest.raises(UsageError, match="needs BatchNorm"):
        prune(net, make_criterion("slimming"), PlanConfig(0.5), PruneContext(torch.randn(1, 3, 8, 8)), 10)


@pytest.mark.parametrize("name,kept", [("l1", 0), ("magnitude", 1), ("slimming", 1)])
def test_pruning_half_keeps_the_channel_the_criterion_prefers(name, kept):
    model = TwoConv()
    ref = model.conv1.weight[kept].clone()
    prune(model, make_criterion(name), PlanConfig(0.5), PruneContext(torch.randn(1, 1, 4, 4)), 3)
    assert model.conv1.out_channels == 1 and model.conv2.in_channels == 1
    assert torch.equal(model.conv1.weight[0], ref)


def test_random_is_seeded():
    a, b, c = (_random_kept(s) for s in (1, 1, 2))
    assert a == b and (a != c or _random_kept(3) != a)


def _random_kept(seed):
    from filterprune.models import ModelSpec, build_model

    torch.manual_seed(0)
    m = build_model(ModelSpec("resnet20"))
    res = prune(
        m, make_criterion("random"), PlanConfig(0.5), PruneContext(torch.randn(1, 3, 32, 32), seed=seed), 10
    )
    return [tuple(h[2]) for h in res.history]

"""Greedy output-norm pruning: the fast per-group algorithm equals brute-force re-measurement after every
single removal, on a tiny net with a residual add and a concat."""

import math

import pytest
import torch
import torch.nn as nn

from filterprune.criteria import PruneContext, make_criterion
from filterprune.data import ImageData, make_loader
from filterprune.errors import UsageError
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune


class ResCat(nn.Module):
    """stem -> a -> b (+ stem: residual) -> c, concat [residual, c] -> d -> pool -> fc."""

    def __init__(self):
        super().__init__()
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1, bias=False)  # noqa: E731
        self.stem, self.a, self.b, self.c, self.d = (
            conv(3, 6),
            conv(6, 6),
            conv(6, 6),
            conv(6, 4),
            conv(10, 4),
        )
        self.bs, self.ba, self.bb, self.bc, self.bd = (nn.BatchNorm2d(n) for n in (6, 6, 6, 4, 4))
        self.fc = nn.Linear(4, 3)
        for bn in (self.bs, self.ba, self.bb, self.bc, self.bd):  # distinct gammas identify channels
            nn.init.uniform_(bn.weight, 0.5, 1.5)
            nn.init.uniform_(bn.bias, -0.2, 0.2)
            bn.running_mean.uniform_(-0.1, 0.1)

    def forward(self, x):
        return _forward(self, x, {}, [])


def _forward(net, x, m, taps):
    """The network with channel masks (a masked channel = a removed one); ``taps`` collects what each
    group's readers read."""
    s = torch.relu(net.bs(net.stem(x))) * m.get("res", 1)
    taps.append(("res", s))  # read by conv a
    a = torch.relu(net.ba(net.a(s))) * m.get("a", 1)
    taps.append(("a", a))  # read by conv b
    r = torch.relu(s + net.bb(net.b(a)) * m.get("res", 1))
    taps.append(("res", r))  # read by conv c
    c = torch.relu(net.bc(net.c(r))) * m.get("c", 1)
    cat = torch.cat([r, c], 1)
    taps.append(("res", cat[:, :6]))  # conv d reads both parts of the concat
    taps.append(("c", cat[:, 6:]))
    d = torch.relu(net.bd(net.d(cat))) * m.get("d", 1)
    pooled = d.mean((2, 3))
    taps.append(("d", pooled))  # read by fc
    return net.fc(pooled)


def _data(n=16, size=8):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (n,), generator=g)
    return ImageData("t", x, y, x[:4], y[:4], ["0", "1", "2"], source="test")


def _brute_force(model, batches, sparsity):
    """Remove one channel at a time, re-running the network after every removal."""
    widths = {"res": 6, "a": 6, "c": 4, "d": 4}
    masks = {k: torch.ones(1, w, 1, 1) for k, w in widths.items()}
    for name, width in widths.items():  # execution order of the groups' first layers
        keep = math.ceil((1 - sparsity) * width)
        while int(masks[name].sum()) > keep:
            energy = torch.zeros(width, dtype=torch.float64)
            for x in batches:
                taps = []
                _forward(model, x, masks, taps)
                for k, t in taps:
                    if k == name:
                        energy += t.double().pow(2).sum([0, *range(2, t.dim())])
            energy[masks[name].flatten() == 0] = float("inf")
            masks[name].view(-1)[int(energy.argmin())] = 0
    return {k: set(torch.nonzero(v.flatten()).flatten().tolist()) for k, v in masks.items()}


def _kept(bn_before, bn_after):
    return {int((bn_before.weight == w).nonzero()) for w in bn_after.weight}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_matches_brute_force_re_measurement(seed):
    torch.manual_seed(seed)
    model = ResCat().eval()
    ref = ResCat().eval()
    ref.load_state_dict(model.state_dict())
    data = _data()
    ctx = PruneContext(torch.randn(1, 3, 8, 8), data=data, batch_size=4, calib_batches=2, seed=seed)
    batches = [x for x, _ in make_loader(data, "train", 4, shuffle=True, seed=seed)][:2]
    with torch.no_grad():
        expected = _brute_force(ref, batches, 0.5)
    prune(model, make_criterion("greedy"), PlanConfig(0.5), ctx, 3)
    got = {
        "res": _kept(ref.bs, model.bs),
        "a": _kept(ref.ba, model.ba),
        "c": _kept(ref.bc, model.bc),
        "d": _kept(ref.bd, model.bd),
    }
    assert _kept(ref.bb, model.bb) == got["res"]  # the residual add pruned both sides alike
    assert got == expected
    assert model.d.in_channels == 3 + 2 and model(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_greedy_keeps_the_channel_with_the_larger_output():
    """A filter with small weights but a strong BN scale matters; greedy sees it, l1 does not."""
    net = nn.Sequential(
        nn.Conv2d(3, 2, 1, bias=False),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Conv2d(2, 4, 1),
        nn.Flatten(),
        nn.LazyLinear(3),
    )
    net(torch.randn(1, 3, 4, 4))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [0.1, 0.1, 0.1]]).view(2, 3, 1, 1))
        net[1].weight.copy_(torch.tensor([0.01, 50.0]))
        net[1].bias.fill_(1.0)
    net.eval()
    ctx = PruneContext(torch.randn(1, 3, 4, 4), data=_data(size=4), batch_size=8, calib_batches=2)
    ref = net[0].weight[1].clone()
    prune(net, make_criterion("greedy"), PlanConfig(0.5), ctx, 3)
    assert net[0].out_channels == 1 and torch.equal(net[0].weight[0], ref)


def test_greedy_refuses_global_scope():
    model = ResCat()
    ctx = PruneContext(torch.randn(1, 3, 8, 8), data=_data(), batch_size=4, calib_batches=1)
    with pytest.raises(UsageError, match="layerwise"):
        prune(model, make_criterion("greedy"), PlanConfig(0.5, scope="global"), ctx, 3)


@pytest.mark.parametrize("name", ["vgg16", "resnet20", "tv:mobilenet_v2"])
def test_greedy_prunes_real_architectures(name):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name))
    dense = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    ctx = PruneContext(torch.randn(1, 3, 32, 32), data=_data(8, 32), batch_size=4, calib_batches=1)
    res = prune(model, make_criterion("greedy"), PlanConfig(0.4), ctx, 10)
    after = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(after) < sum(dense) and not res.skipped
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tv:googlenet", "tv:densenet121"])
def test_greedy_prunes_concat_architectures(name):
    test_greedy_prunes_real_architectures(name)

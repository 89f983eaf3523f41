"""Mask criteria (snip, grasp, synflow, mag, rand, imp): densities, hand-computed scores, IMP's nesting and
rewinding, the seed FLOP convention, and the mask -> channel saliency reduction."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from filterprune.benchmarking import counting
from filterprune.criteria import PruneContext, make_criterion
from filterprune.data import ImageData
from filterprune.errors import UsageError
from filterprune.masks import MaskConfig
from filterprune.masks.saliency import channel_saliency
from filterprune.masks.schedule import held, imp
from filterprune.masks.weights import apply_masks, density, mask_at, prunable
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune
from filterprune.targets import Sparsity
from filterprune.train import TrainConfig, train

X32 = torch.randn(1, 3, 32, 32)


@pytest.fixture(scope="module")
def vgg16():
    torch.manual_seed(0)
    return build_model(ModelSpec("vgg16-lottery"))


@pytest.fixture(scope="module")
def resnet56():
    torch.manual_seed(0)
    return build_model(ModelSpec("resnet56"))  # 57 masked layers, 0.85M weights


def _mask(model, name, **cfg):
    crit = make_criterion(name)
    crit.prepare(model, PruneContext(X32, mask=MaskConfig(**cfg)))
    return crit.masks


@pytest.mark.parametrize("scope", ["global", "layerwise"])
@pytest.mark.parametrize("c", [0.05, 0.5, 1, 2])
def test_mask_density_is_ten_to_minus_c(resnet56, c, scope):
    masks = _mask(resnet56, "mag", compression=c, scope=scope)
    assert set(masks) == set(prunable(resnet56))  # every conv and the classifier, nothing else
    assert density(masks) == pytest.approx(10**-c, rel=0.005)
    if scope == "layerwise":
        for name, m in masks.items():
            assert int(m.sum()) == max(1, round(10**-c * m.numel())), name


def test_global_magnitude_keeps_exactly_the_largest_weights(resnet56):
    masks = _mask(resnet56, "mag", compression=1)
    layers = prunable(resnet56).items()
    kept = torch.cat([m.weight.detach().abs().flatten()[masks[n].flatten()] for n, m in layers])
    dropped = torch.cat([m.weight.detach().abs().flatten()[~masks[n].flatten()] for n, m in layers])
    assert kept.min() >= dropped.max()


def test_a_layer_the_threshold_would_empty_keeps_its_best_weight_with_a_warning():
    scores = {"a": torch.full((10,), 0.001), "b": torch.linspace(1, 2, 1000)}
    with pytest.warns(UserWarning, match="empty 1 layer"):
        masks = mask_at(scores, 0.01, "global")
    assert int(masks["a"].sum()) == 1 and int(masks["b"].sum()) == 10


class Lin(nn.Module):
    """x (4) -> fc1 (3, bias) -> relu -> fc2 (2): small enough to differentiate by hand."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_snip_is_abs_grad_times_weight_by_hand(monkeypatch):
    net = Lin()
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 1, 0, 1])
    monkeypatch.setattr(
        "filterprune.criteria.mask.snip.calibration_batches", lambda ctx, name: iter([(x, y)])
    )
    crit = make_criterion("snip")
    crit.prepare(net, PruneContext(torch.randn(1, 4), data=object(), mask=MaskConfig(compression=0.3)))
    # hand-written backprop of mean cross-entropy through fc2(relu(fc1 x))
    W1, b1, W2 = net.fc1.weight.detach(), net.fc1.bias.detach(), net.fc2.weight.detach()
    h_pre = x @ W1.T + b1
    h = h_pre.clamp_min(0)
    p = torch.softmax(h @ W2.T, 1)
    d_out = (p - F.one_hot(y, 2).float()) / len(y)
    g2 = d_out.T @ h
    g1 = ((d_out @ W2) * (h_pre > 0)).T @ x
    s1, s2 = (g1 * W1).abs(), (g2 * W2).abs()
    total = s1.sum() + s2.sum()
    assert torch.allclose(crit.weight_score["fc1"], s1 / total, atol=1e-6)
    assert torch.allclose(crit.weight_score["fc2"], s2 / total, atol=1e-6)
    assert net.fc1.weight.grad is None  # scored on a scratch copy


class DataFree:
    def __getattr__(self, name):
        raise AssertionError(f"synflow touched the data ({name})")


def test_synflow_by_hand_and_without_data(monkeypatch):
    net = Lin()
    with torch.no_grad():
        net.fc1.bias.copy_(torch.tensor([-1.0, 0.5, -2.0]))  # signs must not matter: |b| enters R
    monkeypatch.setattr(
        "filterprune.masks.schedule.make_loader",  # where the mask criteria get batches
        lambda *a, **k: pytest.fail("synflow loaded data"),
    )
    crit = make_criterion("synflow")
    crit.prepare(
        net,
        PruneContext(torch.randn(1, 4), data=DataFree(), mask=MaskConfig(compression=0.2, synflow_rounds=1)),
    )
    A1, B1, A2 = net.fc1.weight.detach().abs(), net.fc1.bias.detach().abs(), net.fc2.weight.detach().abs()
    # R = 1' |W2| (|W1| 1 + |b1|): dR/dW1_ij = sum_k |W2|_ki, dR/dW2_ki = (|W1| 1 + |b1|)_i
    assert torch.allclose(crit.weight_score["fc1"], (A1 * A2.sum(0)[:, None]).double(), atol=1e-12)
    assert torch.allclose(crit.weight_score["fc2"], (A2 * (A1.sum(1) + B1)[None, :]).double(), atol=1e-12)
    assert net.fc1.bias[0] == -1.0  # the model itself is untouched
    full = make_criterion("synflow")  # the default: 100 rounds, exponential schedule, still data-free
    full.prepare(net, PruneContext(torch.randn(1, 4), data=DataFree(), mask=MaskConfig(compression=0.5)))
    assert sum(int(m.sum()) for m in full.masks.values()) == round(10**-0.5 * 18)


def test_grasp_is_weight_times_hessian_gradient_product(monkeypatch):
    net = Lin()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 1, 0, 1, 0])
    monkeypatch.setattr(
        "filterprune.criteria.mask.grasp.calibration_batches", lambda ctx, name: iter([(x, y)])
    )
    crit = make_criterion("grasp")
    crit.prepare(net, PruneContext(torch.randn(1, 4), data=object(), mask=MaskConfig(compression=0.3)))
    params = [net.fc1.weight, net.fc2.weight]

    def loss(w1, w2):
        return F.cross_entropy(torch.relu(x @ w1.T + net.fc1.bias) @ w2.T / 200, y)

    g = torch.autograd.grad(loss(*params), params)
    _, hg = torch.autograd.functional.hvp(loss, tuple(p.detach() for p in params), tuple(g))
    s = [h * p.detach() for h, p in zip(hg, params)]
    norm = abs(sum(t.sum() for t in s))
    # |sum| of signed scores nearly cancels, so compare up to float32 rounding amplified by it
    assert torch.allclose(crit.weight_score["fc1"], s[0] / norm, rtol=1e-3, atol=1e-4)
    assert torch.allclose(crit.weight_score["fc2"], s[1] / norm, rtol=1e-3, atol=1e-4)


def test_imp_masks_are_nested_and_weights_rewound():
    net, seen = Lin(), []
    start = {k: v.clone() for k, v in net.state_dict().items()}

    def fake_train(model, data, cfg, device, desc):
        seen.append({n: m.weight.detach().clone() for n, m in prunable(model).items()})
        with torch.no_grad():
            for p in model.parameters():  # "training" moves every weight, masked ones included
                p.add_(torch.randn_like(p))

    ctx = PruneContext(torch.randn(1, 4), data=object())
    masks, _ = imp(net, 10**-0.6, "global", 3, None, ctx, train_fn=fake_train)
    assert len(seen) == 3 and torch.equal(seen[0]["fc1"], start["fc1.weight"])
    kept = [{n: w != 0 for n, w in s.items()} for s in seen[1:]] + [masks]
    for earlier, later in zip(kept, kept[1:]):
        assert all(bool((later[n] <= earlier[n]).all()) for n in masks)  # nested
    for s, m in zip(seen[1:], kept):  # each cycle restarts from the starting weights, masked
        assert torch.equal(s["fc1"], start["fc1.weight"] * m["fc1"])
    assert [round(density(k), 3) for k in kept] == [
        round(round(10 ** -(0.6 * i / 3) * 18) / 18, 3) for i in (1, 2, 3)
    ]
    assert all(torch.equal(v, start[k]) for k, v in net.state_dict().items())  # the input model untouched


def test_held_masks_stay_zero_through_sgd_with_momentum_and_decay():
    gen = torch.Generator().manual_seed(0)
    data = ImageData(
        "tiny",
        torch.randint(0, 255, (32, 1, 4, 4), dtype=torch.uint8, generator=gen),
        torch.randint(0, 2, (32,), generator=gen),
        torch.zeros(4, 1, 4, 4, dtype=torch.uint8),
        torch.zeros(4, dtype=torch.long),
        ["a", "b"],
        "test",
    )
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    masks = mask_at({n: torch.rand(m.weight.shape) for n, m in prunable(net).items()}, 0.3, "global")
    apply_masks(net, masks)
    with held(net, masks):
        train(net, data, TrainConfig(epochs=2, batch_size=8, augment=False), torch.device("cpu"))
    assert set(dict(net.named_parameters())) == {"1.weight", "1.bias", "3.weight", "3.bias"}  # plain again
    for n, m in prunable(net).items():
        assert bool((m.weight[~masks[n]] == 0).all()) and bool((m.weight[masks[n]] != 0).all())


def test_density_saliency_ranks_filters_by_kept_fraction_ties_by_score():
    conv = nn.Conv2d(1, 3, 2)
    mask = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0]], dtype=torch.bool).view(3, 1, 2, 2)
    scores = torch.tensor([[1.0, 1, 9, 9], [5, 0, 0, 0], [2, 2, 0, 0]]).view(3, 1, 2, 2)
    s = channel_saliency(mask, scores, conv, "density")
    assert torch.allclose(s, torch.tensor([0.5, 0.25, 0.5], dtype=s.dtype), atol=0.125 + 1e-9)
    assert s[2] > s[0] > s[1]  # 0.5 == 0.5, broken by the kept score sum (4 > 2)
    assert torch.equal(channel_saliency(mask, scores, conv, "sum"), torch.tensor([2.0, 5.0, 4.0]))


def test_flop_counter_hits_the_seed_total_and_reproduces_its_rand_flop_fractions(vgg16):
    dense = counting.count(vgg16, (3, 32, 32))
    assert dense.flops == 313_478_154 and dense.macs == 313_201_664
    # the seed table (Zhao, Table 3) prints Rand FLOP fractions 0.1009 at c=1 and 0.0108 at c=2
    for c, seed in ((1, 0.1009), (2, 0.0108)):
        masks = _mask(vgg16, "rand", compression=c)
        masked = counting.count(apply_masks(_copy(vgg16), masks), (3, 32, 32), masks)
        assert masked.macs == dense.macs  # zeros are still multiplied
        assert masked.flops / dense.flops == pytest.approx(seed, abs=0.001)


def _copy(m):
    import copy

    return copy.deepcopy(m)


def test_bn_affine_counts_in_seed_flops():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
    c = counting.count(net, (3, 8, 8))
    assert c.macs == 4 * 64 * 27 and c.flops == c.macs + 2 * 4 * 64


@pytest.mark.parametrize("name", ["mag", "rand", "synflow"])
def test_mask_criteria_shrink_real_architectures(name):
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet20"))
    dense = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    cfg = MaskConfig(compression=Sparsity(0.4).compression(), synflow_rounds=2)
    prune(model, make_criterion(name), PlanConfig(0.4, "global"), PruneContext(X32, mask=cfg), 10)
    after = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    assert after < dense and model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_default_compression_and_bad_mask_config():
    assert Sparsity(0.4).compression() == pytest.approx(-2 * math.log10(0.6))
    assert 10 ** -Sparsity(0.4).compression() == pytest.approx(0.36)
    for bad in (
        {"compression": -0.1},
        {"compression": math.inf},
        {"compression": 1, "imp_iterations": 0},
        {"compression": 1, "scope": "local"},
        {"compression": 1, "reduce": "max"},
    ):
        with pytest.raises(UsageError):
            MaskConfig(**bad)


FAST = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--finetune-epochs",
    "1",
    "--bench-iters",
    "2",
    "--bench-batch-sizes",
    "1,4",
]


def test_compress_reports_the_masked_control_beside_the_shrunk_model(tmp_path):
    import json

    import filterprune
    from filterprune.cli import main

    out = tmp_path / "run"
    assert (
        main(["compress", "resnet20", "--criterion", "mag", "--sparsity", "0.4", "--out", str(out), *FAST])
        == 0
    )
    assert {"model.onnx", "dense.onnx", "masked.onnx", "report.json"} <= {p.name for p in out.iterdir()}
    r = json.loads((out / "report.json").read_text())
    d, p, m = r["dense"], r["pruned"], r["masked"]
    assert r["mode"] == "shrink" and m["compression"] == pytest.approx(Sparsity(0.4).compression())
    assert m["weight_density"] == pytest.approx(0.36, rel=0.005)
    assert m["macs"] == d["macs"] and m["params"] == d["params"]  # zeros are stored and computed
    assert m["nonzero_params"] < 0.5 * d["params"] and m["flops"] < 0.6 * d["flops"]
    assert m["flop_fraction"] == pytest.approx(m["flops"] / d["flops"])
    assert p["macs"] < d["macs"] and p["params"] < d["params"] and 0 <= m["accuracy"] <= 1
    for row in r["latency"]:
        assert row["masked_speedup"] == pytest.approx(row["dense_ms"] / row["masked_ms"])
    assert "masked (zeros kept)" in (out / "report.md").read_text()
    # the run folder alone is enough to time the masked control again, with its own (zeroed) weights
    masked = filterprune.load(out / "masked.json")
    w = [m.weight for m in masked.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(int((x == 0).sum()) for x in w) > 0.5 * sum(x.numel() for x in w)
    bench = tmp_path / "bench"
    assert main(["bench", str(out), "--batch-sizes", "1", "--iters", "2", "--out", str(bench)]) == 0
    rows = json.loads((bench / "bench.json").read_text())["rows"]
    assert {r["variant"] for r in rows} == {"dense", "pruned", "masked"}
    assert {r["runtime"] for r in rows if r["variant"] == "masked"} == {"torch", "onnxruntime"}


def test_masked_mode_keeps_the_dense_shape_with_imp_masks(tmp_path):
    import json

    import filterprune
    from filterprune.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "compress",
                "mlp",
                "--criterion",
                "imp",
                "--sparsity",
                "0.4",
                "--mode",
                "masked",
                "--compression",
                "1",
                "--imp-iterations",
                "2",
                "--imp-epochs",
                "1",
                "--dataset",
                "digits",
                "--epochs",
                "1",
                "--finetune-epochs",
                "1",
                "--no-bench",
                "--no-export",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "report.json").read_text())
    assert r["mode"] == "masked" and r["pruned"]["macs"] == r["dense"]["macs"]
    assert all(x["channels_after"] == x["channels_before"] for x in r["layers"])
    assert r["masked"]["weight_density"] == pytest.approx(0.1, rel=0.005)
    model = filterprune.load(out)  # finetuned with the mask held: still exactly 10% non-zero
    w = torch.cat([m.weight.detach().flatten() for m in prunable(model).values()])
    assert (w != 0).float().mean().item() == pytest.approx(0.1, rel=0.005)


def test_steps_keep_the_masked_control_on_the_dense_mask(tmp_path):
    """With --steps, later steps re-mask the pruned model; the control still uses the dense model's mask."""
    import json

    from filterprune.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "compress",
                "mlp",
                "--criterion",
                "snip",
                "--sparsity",
                "0.5",
                "--steps",
                "2",
                "--dataset",
                "digits",
                "--epochs",
                "1",
                "--finetune-epochs",
                "1",
                "--no-bench",
                "--no-export",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "report.json").read_text())
    assert r["masked"]["macs"] == r["dense"]["macs"] > r["pruned"]["macs"]
    assert r["masked"]["weight_density"] == pytest.approx(10 ** -r["masked"]["compression"], rel=0.005)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--criterion", "snip", "--compression", "-1"], "--compression must be >= 0"),
        (["--criterion", "imp", "--imp-iterations", "0"], "--imp-iterations must be >= 1"),
        (["--criterion", "l1", "--mode", "masked"], "--mode masked needs a mask criterion"),
        (["--criterion", "snip", "--mask-scope", "local"], "invalid choice"),
    ],
)
def test_bad_mask_options_exit_2_in_one_line(tmp_path, capsys, args, needle):
    import re

    from filterprune.cli import main

    assert main(["compress", "vgg16", "--sparsity", "0.4", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(needle, err) and len(err.splitlines()) == 1 and not (tmp_path / "o").exists()

"""Allocation beyond a plain sparsity: --target-macs (MACs <= F x dense), --steps (iterative), and the
cost model that predicts MACs without pruning."""

import math
import warnings

import pytest
import torch
import torch.nn as nn

import filterprune
from filterprune import serialization as ckpt
from filterprune.benchmarking.counting import count
from filterprune.cli import main
from filterprune.criteria import PruneContext, make_criterion
from filterprune.errors import UsageError
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune, prune_in_steps
from filterprune.targets import Macs

X32 = torch.randn(1, 3, 32, 32)


def _model(name):
    torch.manual_seed(0)
    return build_model(ModelSpec(name))


@pytest.mark.parametrize(
    "name,criterion,scope",
    [
        ("vgg16", "l1", "layerwise"),
        ("vgg16", "slimming", "global"),
        ("resnet20", "magnitude", "layerwise"),
        ("tv:mobilenet_v2", "l1", "layerwise"),
    ],
)
def test_target_macs_lands_just_under_the_target(name, criterion, scope):
    model = _model(name)
    dense = count(model, (3, 32, 32)).macs
    res = prune(model, make_criterion(criterion), PlanConfig(Macs(0.5), scope), PruneContext(X32), 10)
    macs = count(model, (3, 32, 32)).macs
    assert 0.45 * dense < macs <= 0.5 * dense
    # the smallest such sparsity: a little less pruning misses the target
    less = _model(name)
    prune(less, make_criterion(criterion), PlanConfig(res.sparsity - 0.01, scope), PruneContext(X32), 10)
    assert count(less, (3, 32, 32)).macs > 0.5 * dense


def test_cost_model_is_exact_on_concat_nets():
    from filterprune.pruning.graph import build_graph, channel_groups, output_layers
    from filterprune.pruning.plan import allocate
    from filterprune.pruning.target import CostModel

    model = _model("tv:googlenet")
    DG = build_graph(model, X32)
    groups = channel_groups(DG, output_layers(DG))
    crit = make_criterion("l1")
    scored = [(cg, crit.score(cg.group)) for cg in groups]
    plan = PlanConfig(0.3)
    predicted = CostModel(model, X32, scored).macs(allocate([s for _, s in scored], plan))
    prune(model, crit, plan, PruneContext(X32), 10)
    assert predicted == count(model, (3, 32, 32)).macs


def test_unreachable_target_is_a_usage_error():
    with pytest.raises(UsageError, match="out of reach"):
        prune(_model("resnet20"), make_criterion("l1"), PlanConfig(Macs(0.001)), PruneContext(X32), 10)


def test_steps_reach_the_one_shot_widths_gradually(tmp_path):
    model = _model("resnet20")
    dense = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    seen = []
    res = prune_in_steps(
        model,
        make_criterion("l1"),
        PlanConfig(0.4),
        PruneContext(X32),
        10,
        steps=3,
        finetune=lambda m, i: seen.append(
            (i, [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)])
        ),
    )
    assert [i for i, _ in seen] == [1, 2]  # finetuned between steps, not after the last
    assert seen[0][1] == [math.ceil((1 - 0.4 / 3) * c) for c in dense]
    final = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert final == [math.ceil(0.6 * c) for c in dense]
    # the concatenated history replays to the same network
    ckpt.save(model, tmp_path / "m", ModelSpec("resnet20"), res.history)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(ckpt.load(tmp_path / "m.json")(x), model.eval()(x), atol=1e-5)


def test_steps_with_target_macs_end_under_the_target():
    model = _model("vgg16")
    dense = count(model, (3, 32, 32)).macs
    macs = []
    prune_in_steps(
        model,
        make_criterion("l1"),
        PlanConfig(Macs(0.4)),
        PruneContext(X32),
        10,
        steps=2,
        finetune=lambda m, i: macs.append(count(m, (3, 32, 32)).macs),
    )
    assert 0.65 * dense < macs[0] <= 0.7 * dense  # halfway: 1 - 0.6 / 2
    assert count(model, (3, 32, 32)).macs <= 0.4 * dense


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--target-macs", "0"], r"--target-macs must be in \(0, 1\]"),
        (["--target-macs", "1.5"], r"--target-macs must be in \(0, 1\]"),
        (["--sparsity", "0.4", "--target-macs", "0.5"], "exactly one of --sparsity, --target-macs"),
        ([], "exactly one of --sparsity, --target-macs"),
        (["--sparsity", "0.4", "--steps", "0"], "--steps must be >= 1"),
        (
            ["--sparsity", "0.4", "--sparsity-epochs", "2", "--sparsity-reg", "1e-4"],
            "--sparsity-epochs trains a given",
        ),
        (["--sparsity", "0.4", "--scope", "global", "--criterion", "greedy"], "use --scope layerwise"),
        (
            ["--sparsity", "0.4", "--checkpoint", __file__, "--sparsity-reg", "1e-4"],
            "needs --sparsity-epochs N",
        ),
    ],
)
def test_bad_allocation_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    import re

    crit = [] if "--criterion" in args else ["--criterion", "l1"]
    code = main(
        [
            "compress",
            "resnet20",
            *crit,
            *args,
            "--dataset",
            "synthetic",
            "--epochs",
            "0",
            "--finetune-epochs",
            "0",
            "--no-export",
            "--no-bench",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and re.search(needle, err[-1]), err
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "o").exists()


@pytest.mark.parametrize("criterion", ["l1", "snip"])
def test_target_macs_config_validates_and_ties_the_mask_compression_to_it(criterion):
    from filterprune.api import CompressConfig

    cfg = CompressConfig.of(model="resnet20", criterion=criterion, target_macs=0.25)
    cfg.validate()  # was a TypeError: the default compression was computed from sparsity=None
    assert cfg.mask_config().compression == pytest.approx(math.log10(4))


def test_the_default_rounds_kept_channels_to_multiples_of_16_and_keeps_narrow_layers_whole():
    """Chosen by measurement (benchmarks/speedup/round_to_default): 16-channel blocks run fast on CPU fp32 and
    int8 kernels; a layer narrower than 16 channels cannot shrink to a multiple of 16 and is kept whole."""
    model = nn.Sequential(
        nn.Conv2d(3, 64, 3), nn.ReLU(), nn.Conv2d(64, 8, 3), nn.ReLU(), nn.Conv2d(8, 96, 3), nn.ReLU(),
        nn.Conv2d(96, 10, 1),
    )  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filterprune.prune(model, torch.randn(1, 3, 16, 16), "l1", 0.3)
    assert [m.out_channels for m in model if isinstance(m, nn.Conv2d)] == [
        48,
        8,
        64,
        10,
    ]  # 45 -> 48, 68 -> 64
    assert any("--round-to 16 is wider than 1 of 3 layer(s)" in str(w.message) for w in caught)

"""Finetuning that keeps accuracy: distillation from the dense model, recipes, the validation split that
chooses the kept epoch, the from-scratch control, and the seed studies' VGG16 exactly."""

import copy
import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from filterprune.api import CompressConfig
from filterprune.cli import main
from filterprune.errors import UsageError
from filterprune.models import ModelSpec, build_model
from filterprune.train import TrainConfig, distill_loss, evaluate, train

CPU = torch.device("cpu")


def _tiny_data():
    from filterprune.data.synthetic import synthetic

    return synthetic(None, n_train=160, n_test=40, image_size=8)


def _tiny_net():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def test_distill_loss_equals_a_hand_computation():
    s = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    t = torch.tensor([[1.0, 1.5, 0.0], [-0.5, 0.0, 2.0]])
    y = torch.tensor([0, 2])
    alpha, temp = 0.7, 3.0
    ce = -sum(math.log(math.exp(s[i, y[i]]) / sum(math.exp(v) for v in s[i])) for i in range(2)) / 2
    kl = 0.0
    for i in range(2):
        pt = [math.exp(v / temp) for v in t[i]]
        pt = [p / sum(pt) for p in pt]
        ps = [math.exp(v / temp) for v in s[i]]
        ps = [p / sum(ps) for p in ps]
        kl += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    expected = (1 - alpha) * ce + alpha * temp**2 * kl / 2
    assert distill_loss(s, t, y, alpha, temp).item() == pytest.approx(expected, rel=1e-5)
    # no teacher, or alpha 0: exactly the plain cross-entropy (what --distill off trains with)
    assert torch.equal(distill_loss(s, None, y, alpha, temp), F.cross_entropy(s, y))
    assert torch.equal(distill_loss(s, t, y, 0.0, temp), F.cross_entropy(s, y))


def test_teacher_gets_no_gradient_and_is_unchanged():
    data = _tiny_data()
    teacher = _tiny_net()
    teacher.train()
    before = copy.deepcopy(teacher.state_dict())
    student = copy.deepcopy(teacher)
    train(student, data, TrainConfig(epochs=1, distill_alpha=0.7, batch_size=32), CPU, teacher=teacher)
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # BN stats too
    assert teacher.training  # its mode is given back
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_teacher_mode_is_given_back_when_training_stops_on_a_nan():
    from filterprune.train import NonFiniteLoss

    data, teacher = _tiny_data(), _tiny_net().train()
    student = _tiny_net()
    with torch.no_grad():
        student[-1].bias.fill_(float("nan"))
    with pytest.raises(NonFiniteLoss):
        train(student, data, TrainConfig(epochs=1, distill_alpha=0.7, batch_size=32), CPU, teacher=teacher)
    assert teacher.training


def test_annealed_distillation_hands_over_from_teacher_to_labels(monkeypatch):
    """--distill anneal: the teacher's weight falls linearly from --distill-alpha at the first step to
    about 0 at the last, so the last epochs learn from the labels alone."""
    cfg = CompressConfig.of(
        model="resnet20", criterion="l1", sparsity=0.4, distill="anneal"
    ).finetune_config()
    assert (
        cfg.distill_anneal
        and cfg.distill_alpha == 0.7
        and CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4).finetune.distill == "anneal"
    )
    assert (
        not CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, distill="kd")
        .finetune_config()
        .distill_anneal
    )
    import filterprune.train as tr

    seen = []
    real = tr.distill_loss
    monkeypatch.setattr(
        tr, "distill_loss", lambda s, t, y, a, *rest: seen.append(a) or real(s, t, y, a, *rest)
    )
    data, teacher = _tiny_data(), _tiny_net()
    before = copy.deepcopy(teacher.state_dict())
    train(
        _tiny_net(),
        data,
        TrainConfig(epochs=2, distill_alpha=0.8, distill_anneal=True, batch_size=32),
        CPU,
        teacher=teacher,
    )
    steps = len(seen)
    assert steps == 2 * math.ceil(len(data.y_train) / 32)
    assert seen == pytest.approx([0.8 * (1 - i / steps) for i in range(steps)])
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_distill_off_trains_exactly_like_plain_cross_entropy():
    data = _tiny_data()
    torch.manual_seed(0)
    a = _tiny_net()
    b, teacher = copy.deepcopy(a), copy.deepcopy(a)
    cfg = TrainConfig(epochs=1, batch_size=32)
    h_plain = train(a, data, cfg, CPU)
    h_teacher_alpha0 = train(b, data, cfg, CPU, teacher=teacher)  # distill_alpha 0: the soft term is off
    assert h_plain == h_teacher_alpha0
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_validation_split_is_carved_from_training_data_only():
    data = _tiny_data()
    a, b = data.carve_val(0.2, seed=3), data.carve_val(0.2, seed=3)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_val, b.y_val)  # the same for every criterion
    assert not torch.equal(data.carve_val(0.2, seed=4).x_val, a.x_val)
    assert torch.equal(a.x_test, data.x_test) and torch.equal(a.y_test, data.y_test)
    assert len(a.y_val) + len(a.y_train) == len(data.y_train)
    assert len(a.y_val) == pytest.approx(0.2 * len(data.y_train), abs=data.num_classes)
    # disjoint: every training image is in exactly one of train / val (counted as rows)
    rows = lambda x: {bytes(r.numpy().tobytes()) for r in x}  # noqa: E731
    assert rows(a.x_val).isdisjoint(rows(a.x_train))
    assert rows(a.x_val) | rows(a.x_train) == rows(data.x_train)
    assert rows(a.x_val).isdisjoint(rows(data.x_test))
    assert a.mean == data.mean and a.std == data.std
    assert data.carve_val(0.0, 0) is data


def test_kept_epoch_is_the_best_on_validation():
    data = _tiny_data().carve_val(0.2, 0)
    model = _tiny_net()
    hist = train(model, data, TrainConfig(epochs=4, batch_size=32, lr=0.05), CPU)
    kept = [r for r in hist if r.get("kept")]
    assert len(kept) == 1 and kept[0]["val_top1"] == max(r["val_top1"] for r in hist)
    assert evaluate(model, data, CPU, split="val")["top1"] == pytest.approx(kept[0]["val_top1"])


def test_recipes_fill_what_the_flags_leave_unset():
    lajic = CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, recipe="lajic")
    ft = lajic.finetune_config(10)
    assert (ft.lr, ft.schedule, ft.batch_size, ft.crop, ft.epochs) == (1e-3, "step", 32, False, 10)
    assert lajic.finetune_config(100).epochs == 20
    ours = CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4)
    ft = ours.finetune_config(10)
    assert ft.lr == pytest.approx(ours.baseline_config().learning_rate * 0.5) and ft.distill_alpha == 0.7
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, distill="off")
        .finetune_config()
        .distill_alpha
        == 0.0
    )
    given = CompressConfig.of(
        model="resnet20", criterion="l1", sparsity=0.4, recipe="lajic", finetune_epochs=2, finetune_lr=0.05
    )
    assert (given.finetune_config().epochs, given.finetune_config().lr) == (2, 0.05)
    assert (
        CompressConfig.of(
            model="resnet20", criterion="l1", sparsity=0.4, epochs=5, finetune_epochs=2, steps=2
        )
        .scratch_config(10)
        .epochs
        == 9
    )


def test_default_finetune_lasts_as_long_as_the_baseline_trained():
    """8 finetune epochs lost 3.3 points where the baseline's 30 lost 0.1 (benchmarks/accuracy/): the default
    recipe finetunes for --epochs, never fewer than 8 (16 for 100 classes); the presets keep their own."""
    assert CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4).finetune_config(10).epochs == 8
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, epochs=30)
        .finetune_config(10)
        .epochs
        == 30
    )
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, epochs=3).finetune_config(10).epochs
        == 8
    )
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, epochs=3)
        .finetune_config(100)
        .epochs
        == 16
    )
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, epochs=30, recipe="lajic")
        .finetune_config(10)
        .epochs
        == 10
    )
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, epochs=30, finetune_epochs=4)
        .finetune_config(10)
        .epochs
        == 4
    )
    assert (
        CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4, epochs=30).scratch_config(10).epochs
        == 60
    )


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--distill-alpha", "1.5"], "--distill-alpha must be in [0, 1]"),
        (["--distill-alpha", "-0.1"], "--distill-alpha must be in [0, 1]"),
        (["--distill-temperature", "0"], "--distill-temperature must be > 0"),
        (["--distill-temperature", "nan"], "--distill-temperature must be > 0"),
        (["--val-fraction", "0.7"], "--val-fraction must be in [0, 0.5]"),
        (["--val-fraction", "-0.1"], "--val-fraction must be in [0, 0.5]"),
        (["--distill", "soft"], "invalid choice: 'soft'"),
        (["--recipe", "nope"], "unknown --recipe 'nope'"),
    ],
)
def test_bad_finetune_flags_are_one_line_usage_errors(tmp_path, capsys, flags, needle):
    out = tmp_path / "run"
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "l1",
                "--sparsity",
                "0.4",
                "--dataset",
                "synthetic",
                "--out",
                str(out),
                *flags,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and not out.exists()


def test_train_refuses_a_bad_val_fraction(capsys):
    assert main(["train", "resnet20", "--dataset", "synthetic", "--val-fraction", "0.9"]) == 2
    assert "--val-fraction must be in [0, 0.5]" in capsys.readouterr().err


def test_compress_reports_kept_epoch_distillation_and_the_scratch_control(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "compress",
                "mlp",
                "--criterion",
                "l1",
                "--sparsity",
                "0.4",
                "--dataset",
                "synthetic",
                "--epochs",
                "1",
                "--finetune-epochs",
                "2",
                "--scratch",
                "--no-export",
                "--no-bench",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads((out / "report.json").read_text())
    assert r["finetune"]["distill"] == "anneal" and r["finetune"]["config"]["distill_alpha"] == 0.7
    assert r["finetune"]["config"]["distill_anneal"]
    assert r["finetune"]["kept_epoch"] in (1, 2) and r["dataset"]["val"] > 0
    assert r["scratch"]["epochs"] == 3 and 0 <= r["scratch"]["accuracy"] <= 1
    assert len(r["scratch"]["history"]) == 3


def test_error_on_val_of_data_without_split():
    with pytest.raises(ValueError, match="no validation split"):
        _tiny_data().split("val")
    with pytest.raises(UsageError):
        _tiny_data().carve_val(0.8, 0)


# ------------------------------------------------------------------ the seed studies' VGG16, exactly
class _ReferenceLotteryVGG(nn.Module):
    """A transcription of ganguli-lab/Synaptic-Flow Models/lottery_vgg.py (VGG-16, ConvModule, no BN,
    dense classifier) with plain torch layers."""

    PLAN = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]

    def __init__(self, num_classes=10):
        super().__init__()
        layer_list, filters = [], 3
        for spec in self.PLAN:
            if spec == "M":
                layer_list.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layer_list += [nn.Conv2d(filters, spec, kernel_size=3, padding=1), nn.ReLU()]
                filters = spec
        self.layers = nn.Sequential(*layer_list)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layers(x)
        x = nn.AvgPool2d(2)(x)
        return self.fc(x.view(x.size(0), -1))


def test_vgg16_lottery_computes_the_reference_function():
    ours, ref = build_model(ModelSpec("vgg16-lottery")), _ReferenceLotteryVGG()
    ours_p = [p for _, p in ours.named_parameters()]
    ref_p = [p for _, p in ref.named_parameters()]
    assert [p.shape for p in ours_p] == [p.shape for p in ref_p]
    with torch.no_grad():
        for a, b in zip(ours_p, ref_p):
            b.copy_(a)
    x = torch.randn(8, 3, 32, 32)
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_vgg16_lottery_init_is_kaiming_fan_in_with_zero_bias():
    torch.manual_seed(0)
    model = build_model(ModelSpec("vgg16-lottery"))
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 14
    for m in layers:
        fan_in = m.weight[0].numel()
        assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.1), m
        assert torch.count_nonzero(m.bias) == 0
    assert layers[0].weight.std().item() == pytest.approx(0.272, abs=0.02)


def test_prepared_gpu_benchmark_dry_runs_on_cpu(tmp_path):
    """benchmarks/gpu/run.sh's code path, on the CPU with tiny settings: the GPU call must not be its first run."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks/gpu/gpu_bench.py"),
            "--dry-run",
            "--models",
            "resnet56",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(root)},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {r["variant"] for r in rows} == {"dense", "pruned", "auto"}
    assert {r["setting"] for r in rows} >= {"eager fp32", "eager fp16", "cuda graph fp32", "peak memory"}
    timed = [r for r in rows if r["setting"] != "peak memory"]
    assert all(r["p50_ms"] > 0 and not r["error"] for r in timed)
    assert all(r["theoretical_speedup"] > 2 for r in timed if r["variant"] != "dense")
    # the TensorRT part: an FP16 and an INT8 (QDQ) file per variant, run by the CPU provider in a dry run
    trt = [r for r in timed if r["setting"].startswith("tensorrt")]
    assert {(r["setting"], r["variant"]) for r in trt} == {
        (s, v) for s in ("tensorrt fp16", "tensorrt int8") for v in ("dense", "pruned", "auto")
    }
    assert all(r["provider"] == "CPUExecutionProvider" and r["speedup_vs_dense_fp16"] > 0 for r in trt)
    section = (tmp_path / "section.md").read_text()
    assert "| resnet56 |" in section and "| resnet56 | tensorrt int8 | 2 |" in section
    assert "INT8 against the dense FP16 engine" in section


def test_each_epoch_line_says_the_time_so_far_and_what_is_left(caplog):
    import logging

    import torch

    from filterprune.data import load_dataset
    from filterprune.models import ModelSpec, build_model
    from filterprune.train import TrainConfig, train

    data = load_dataset("synthetic")
    model = build_model(ModelSpec("mlp", 10, 3, 32))
    with caplog.at_level(logging.INFO, logger="filterprune"):
        train(model, data, TrainConfig(epochs=2, batch_size=256), torch.device("cpu"), desc="t")
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("t epoch")]
    assert len(lines) == 2 and "left)" in lines[0] and lines[1].endswith(" s)") and "left" not in lines[1]

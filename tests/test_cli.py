"""The command line as a user meets it: the pipeline end to end, and bad input."""

import json
import subprocess
import sys

import pytest
import torch

import filterprune
from filterprune.cli import main

FAST = ["--epochs", "1", "--finetune-epochs", "1", "--bench-iters", "2", "--bench-batch-sizes", "1,4"]


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "filterprune", *args], capture_output=True, text=True, cwd=cwd
    )


def test_compress_end_to_end_writes_everything(tmp_path, capsys):
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
                "--round-to",
                "1",
                "--dataset",
                "digits",
                "--out",
                str(out),
                *FAST,
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} >= {
        "model.onnx",
        "dense.onnx",
        "pruned.safetensors",
        "pruned.json",
        "report.json",
        "report.md",
        "kept_channels.png",
        "latency_vs_batch.png",
        "speedup_measured_vs_theoretical.png",
    }
    r = json.loads((out / "report.json").read_text())
    for key in (
        "model",
        "criterion",
        "sparsity",
        "dataset",
        "dense",
        "pruned",
        "layers",
        "onnx",
        "latency",
        "theoretical_speedup",
    ):
        assert key in r
    for side in ("dense", "pruned"):
        assert {"params", "macs", "accuracy"} <= r[side].keys()
    assert r["pruned"]["macs"] < r["dense"]["macs"] and r["theoretical_speedup"] > 1.5
    assert r["onnx"]["path"] == "model.onnx" and r["onnx"]["max_abs_diff"] < 1e-3
    assert {(row["runtime"], row["batch_size"]) for row in r["latency"]} == {
        ("torch", 1),
        ("torch", 4),
        ("onnxruntime", 1),
        ("onnxruntime", 4),
    }
    assert all(row["speedup"] == pytest.approx(row["dense_ms"] / row["pruned_ms"]) for row in r["latency"])
    assert r["layers"][0] == {"name": "conv1", "channels_before": 16, "channels_after": 10}
    # the saved model is the exported model
    model = filterprune.load(out)
    from filterprune.exporting.convert import session

    x = torch.randn(3, 3, 32, 32)
    ort_out = session(out / "model.onnx").run(None, {"input": x.numpy()})[0]
    assert abs(model(x).detach().numpy() - ort_out).max() < 1e-4
    assert "progress" not in capsys.readouterr().out  # stdout stays clean; progress goes to stderr


def test_compress_reuses_the_cached_baseline(tmp_path, capsys):
    args = [
        "compress",
        "resnet20",
        "--sparsity",
        "0.3",
        "--dataset",
        "digits",
        "--no-export",
        "--no-bench",
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--seed",
        "7",
    ]
    assert main([*args, "--criterion", "random", "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--criterion", "l1", "--out", str(tmp_path / "b")]) == 0
    assert "reusing cached resnet20" in capsys.readouterr().err
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in "ab")
    assert a["dense"]["accuracy"] == b["dense"]["accuracy"]  # same initial model for every criterion


def test_accuracy_rises_on_real_cifar(tmp_path, shared_data, capsys):
    assert (
        main(
            [
                "train",
                "resnet20",
                "--dataset",
                "cifar10",
                "--data-root",
                str(shared_data),
                "--epochs",
                "2",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "b" / "model.json").read_text())["meta"]
    assert meta["accuracy"]["top1"] > 0.25  # chance is 0.10
    assert meta["accuracy"]["top5"] > meta["accuracy"]["top1"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["compress", "vgg17", "--criterion", "l1", "--sparsity", "0.4"],
            "unknown model 'vgg17'; valid: .*vgg16",
        ),
        (
            ["compress", "vgg16", "--criterion", "l3", "--sparsity", "0.4"],
            "unknown criterion 'l3'; valid: .*slimming",
        ),
        (
            ["compress", "vgg16", "--criterion", "l1", "--sparsity", "0.4", "--dataset", "imagenet"],
            "unknown dataset 'imagenet'; valid: .*cifar10",
        ),
        (["compress", "vgg16", "--criterion", "l1", "--sparsity", "1.0"], r"--sparsity must be in \[0, 1\)"),
        (["compress", "vgg16", "--criterion", "l1", "--sparsity", "-0.2"], r"--sparsity must be in \[0, 1\)"),
        (["compress", "vgg16", "--criterion", "l1", "--sparsity", "abc"], "invalid float value"),
        (
            ["compress", "vgg16", "--criterion", "l1", "--sparsity", "0.4", "--dataset", "npz:/nope.npz"],
            "npz file not found",
        ),
        (
            ["compress", "vgg16", "--criterion", "l1", "--sparsity", "0.4", "--checkpoint", "/nope.pt"],
            "checkpoint not found",
        ),
        (
            ["compress", "vgg16", "--criterion", "l1", "--sparsity", "0.4", "--device", "tpu"],
            "unknown device",
        ),
        (
            ["compress", "vgg16", "--criterion", "l1", "--sparsity", "0.4", "--epochs", "-1"],
            "--epochs must be >= 0",
        ),
        (["compress", "vgg16", "--sparsity", "0.4"], "required: --criterion"),
        (["list", "things"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    p = run_cli(*args, "--out", str(tmp_path / "out")) if args[0] == "compress" else run_cli(*args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    import re

    assert re.search(needle, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


def test_slimming_on_bn_free_model_exits_2(tmp_path):
    p = run_cli(
        "compress",
        "vgg16-lottery",
        "--criterion",
        "slimming",
        "--sparsity",
        "0.4",
        "--dataset",
        "synthetic",
        "--epochs",
        "0",
        "--out",
        str(tmp_path / "o"),
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "needs BatchNorm" in p.stderr.strip().splitlines()[-1] and "[filterprune] prune:" not in p.stderr
    assert not (tmp_path / "o").exists()


def test_checkpoint_of_another_architecture_exits_2(tmp_path):
    from filterprune.models import ModelSpec, build_model

    torch.save(build_model(ModelSpec("resnet20")).state_dict(), tmp_path / "r20.pt")
    p = run_cli(
        "compress",
        "resnet32",
        "--criterion",
        "l1",
        "--sparsity",
        "0.4",
        "--dataset",
        "synthetic",
        "--checkpoint",
        str(tmp_path / "r20.pt"),
        "--out",
        str(tmp_path / "o"),
    )
    assert p.returncode == 2 and "does not match the CifarResNet architecture" in p.stderr
    assert not (tmp_path / "o").exists()


def test_existing_output_is_not_overwritten(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "precious.txt").write_text("keep me")
    p = run_cli(
        "compress", "resnet20", "--criterion", "l1", "--sparsity", "0.4", "--out", str(tmp_path / "o")
    )
    assert p.returncode == 2 and "--overwrite" in p.stderr
    assert (tmp_path / "o" / "precious.txt").read_text() == "keep me"


def test_list_commands():
    for what, needle in (("models", "vgg16-lottery"), ("criteria", "slimming"), ("datasets", "digits")):
        p = run_cli("list", what)
        assert p.returncode == 0 and needle in p.stdout


def test_quiet_prints_only_warnings_and_errors(tmp_path, capsys):
    args = [
        "compress",
        "resnet20",
        "--criterion",
        "l1",
        "--sparsity",
        "0.4",
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--finetune-epochs",
        "0",
        "--no-bench",
        "--no-export",
    ]
    assert main(["--quiet", *args, "--out", str(tmp_path / "q")]) == 0
    assert capsys.readouterr().err == ""
    assert main([*args, "--out", str(tmp_path / "loud")]) == 0
    assert "[filterprune] done:" in capsys.readouterr().err
    assert main(["-q", *args, "--sparsity", "2", "--out", str(tmp_path / "bad")]) == 2
    assert "--sparsity must be in [0, 1)" in capsys.readouterr().err  # errors still say why

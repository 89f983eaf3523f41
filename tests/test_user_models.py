"""Issue 13: the user's own model (factories with trust rules, tv --weights from the hub cache, timm),
the classifier found by position, --ignore-layers, and the Python API on a module in hand."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import filterprune
from filterprune.cli import main
from filterprune.errors import UsageError
from filterprune.models import ModelSpec, build_model, initial_model

NET = Path(__file__).parent / "fixtures" / "new_user_net.py"


def image_folder(root: Path, n_train=8, n_test=4, classes=("cat", "dog"), size=(40, 48)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, cls in enumerate(classes):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 255, (size[0] + i, size[1], 3)).astype(np.uint8)
                a[..., c % 3] = 220
                Image.fromarray(a).save(root / split / cls / f"{i}.{'jpg' if i % 2 else 'png'}")
    return root


@pytest.fixture
def user_net(tmp_path) -> Path:
    """The new user's model file, written outside the project (a fresh path: never trusted before)."""
    d = tmp_path / "elsewhere"
    d.mkdir()
    shutil.copy(NET, d / "my_net.py")
    return d / "my_net.py"


# ------------------------------------------------------------------------ the classifier by position
def test_layers_as_wide_as_the_class_count_are_pruned_and_the_head_is_not():
    """resnet56 on 64 classes: every 64-channel conv used to be left whole because of its width."""
    model = build_model(ModelSpec("resnet56", num_classes=64))
    res = filterprune.prune(model, torch.randn(1, 3, 32, 32), "l1", 0.4, round_to=1)
    widths = {r["name"]: (r["channels_before"], r["channels_after"]) for r in res.layers}
    stage3 = [n for n, (b, a) in widths.items() if b == 64 and n != "fc"]
    assert stage3 and all(widths[n][1] < 64 for n in stage3)
    assert widths["fc"] == (64, 64) and res.model.fc.out_features == 64
    assert res.model(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_mlp_hidden_layers_prune_on_cifar100_width():
    model = build_model(ModelSpec("mlp", num_classes=100, in_channels=1, image_size=28))
    res = filterprune.prune(model, torch.randn(1, 1, 28, 28), "l1", 0.5, round_to=1)
    hidden = [r for r in res.layers if r["channels_before"] == 100]
    assert [r["channels_after"] for r in hidden] == [50] * 5 + [100]  # the last is the classifier


def test_ignored_layers_by_instance_and_by_name():
    model = build_model(ModelSpec("resnet20"))
    res = filterprune.prune(
        model, torch.randn(1, 3, 32, 32), "l1", 0.5, ignored_layers=[model.layers[0].conv1], round_to=1
    )
    assert model.layers[0].conv1.out_channels == 16 and "layers.0.conv1" not in res.removed
    assert res.removed["layers.1.conv1"] == 8
    with pytest.raises(UsageError, match="no layer named 'layers.99'"):
        filterprune.prune(
            build_model(ModelSpec("resnet20")),
            torch.randn(1, 3, 32, 32),
            ignored_layers=["layers.99"],
            round_to=1,
        )


def test_ignore_layers_flag(tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "l1",
                "--sparsity",
                "0.5",
                "--dataset",
                "synthetic",
                "--epochs",
                "0",
                "--finetune-epochs",
                "0",
                "--no-export",
                "--no-bench",
                "--out",
                str(out),
                "--ignore-layers",
                "conv1,layers.2",
            ]
        )
        == 0
    )
    layers = {r["name"]: r for r in json.loads((out / "report.json").read_text())["layers"]}
    assert (
        layers["layers.2.conv1"]["channels_after"] == 16 and layers["layers.3.conv1"]["channels_after"] == 16
    )
    assert layers["layers.6.conv1"]["channels_after"] == 32  # pruned elsewhere


# --------------------------------------------------------------------------- Python API, module in hand
def _net_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("new_user_net_for_tests", NET)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_prune_save_load_round_trip(tmp_path):
    mod = _net_module()
    torch.manual_seed(0)
    net = mod.build(num_classes=5)
    x = torch.randn(4, 3, 32, 32)
    res = filterprune.prune(net, x, "l1", 0.4, inplace=False, ignored_layers=[net.branch], round_to=1)
    assert res.model is not net and net.pw.out_channels == 32 and res.model.pw.out_channels < 32
    assert res.model.branch.out_channels == 16 and res.theoretical_speedup > 1.2
    out = filterprune.save(res.model, tmp_path / "saved")
    with pytest.raises(UsageError, match="handed over as a Python object"):
        filterprune.load(out)
    again = filterprune.load(out, model=mod.build(num_classes=5))
    assert torch.allclose(again(x), res.model.eval()(x), atol=1e-6)


def test_prune_data_driven_criterion_takes_batches_from_the_loader():
    from torch.utils.data import DataLoader, TensorDataset

    mod = _net_module()
    net = mod.build(num_classes=3)
    seen = []

    class Counting(TensorDataset):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)

    loader = DataLoader(Counting(torch.randn(32, 3, 32, 32), torch.randint(0, 3, (32,))), batch_size=8)
    res = filterprune.prune(
        net, torch.randn(1, 3, 32, 32), "snip", 0.3, calib=loader, calib_batches=2, round_to=1
    )
    assert seen and res.removed


def test_compress_with_the_users_module_and_loaders(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    mod = _net_module()
    torch.manual_seed(0)
    net = mod.build(num_classes=4)
    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.randn(48, 3, 32, 32, generator=g), torch.randint(0, 4, (48,), generator=g))
    train, test = DataLoader(ds, batch_size=16, shuffle=True), DataLoader(ds, batch_size=16)
    out = filterprune.compress(
        model=net,
        train=train,
        test=test,
        criterion="l1",
        sparsity=0.4,
        finetune_epochs=1,
        bench=False,
        out=str(tmp_path / "run"),
        round_to=1,
    )
    report = json.loads((out.out / "report.json").read_text())
    assert report == json.loads(json.dumps(out.report))  # the typed result is what report.json holds
    assert 0 <= out.pruned_accuracy <= 1 and out.theoretical_speedup > 1
    assert report["model"].startswith("object:") and report["dataset"]["train"] == 48
    assert report["pruned"]["macs"] < report["dense"]["macs"]
    pruned = filterprune.load(out, model=mod.build(num_classes=4))
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    y = ort.InferenceSession(str(out.out / "model.onnx")).run(None, {"input": x})[0]
    assert np.abs(y - pruned(torch.from_numpy(x)).detach().numpy()).max() < 1e-4


# ------------------------------------------------------------------------------- factories and trust
def test_factory_takes_num_classes_and_model_args(user_net):
    from filterprune.models import factory

    ref = factory.trust(f"{user_net}:build")
    m = build_model(ModelSpec(ref, num_classes=7, args={"width": 8}))
    assert m.head.out_features == 7 and m.stem[0].out_channels == 8


def test_untrusted_factory_is_never_imported(user_net, tmp_path):
    from filterprune.models import factory

    marker = tmp_path / "imported"
    user_net.write_text(user_net.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    with pytest.raises(UsageError, match="built by user code"):
        build_model(ModelSpec(f"{user_net}:build"))
    assert not marker.exists() and not factory.is_trusted(f"{user_net}:build")


@pytest.mark.slow  # ~35 s: four fresh processes
def test_new_user_end_to_end_from_the_command_line(user_net, tmp_path):
    """The issue's 'tried as a new user would': a model file outside the project with a residual add, an SE
    gate, a depthwise-separable block, a concat and GroupNorm, on an image folder; load with and without trust."""
    folder = image_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "filterprune",
            "compress",
            f"{user_net}:build",
            "--criterion",
            "l1",
            "--sparsity",
            "0.4",
            "--dataset",
            f"imagefolder:{folder}",
            "--image-size",
            "48",
            "--epochs",
            "1",
            "--finetune-epochs",
            "1",
            "--batch-size",
            "8",
            "--bench-iters",
            "2",
            "--bench-batch-sizes",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert code.returncode == 0, code.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["model_source"]["kind"] == "factory" and report["model_source"]["code_sha256"]
    assert report["onnx"]["max_abs_diff"] < 1e-4 and report["latency"]
    assert report["pruned"]["macs"] < report["dense"]["macs"] and report["unprunable_groups"] == {}
    layers = {r["name"]: r for r in report["layers"]}
    assert layers["head"]["channels_after"] == 2 and layers["pw"]["channels_after"] < 32
    # without trust: one line, nothing imported
    refusal = subprocess.run(
        [sys.executable, "-c", f"import filterprune; filterprune.load({str(out)!r})"],
        capture_output=True,
        text=True,
    )
    assert refusal.returncode != 0 and "built by user code" in refusal.stderr
    pruned = filterprune.load(out, trust_code=True)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((5, 3, 48, 48)).astype(np.float32)
    sess = ort.InferenceSession(str(out / "model.onnx"))
    y = sess.run(None, {"input": x})[0]
    assert np.abs(y - pruned(torch.from_numpy(x)).detach().numpy()).max() < 1e-4
    md = sess.get_modelmeta().custom_metadata_map  # the deployed file names the model without a local path
    assert md["model"].endswith("my_net.py:build") and "/" not in md["model"] and str(tmp_path) not in str(md)
    assert md["model_sha256"] == report["model_source"]["code_sha256"]
    assert "Input: 3x48x48." in (out / "report.md").read_text()
    # export of the folder needs the same consent: without it one line, exit 2 (this process trusts the
    # file now, so ask a fresh one)
    cli = [sys.executable, "-m", "filterprune", "export", str(out), "--out", str(tmp_path / "again.onnx")]
    refused = subprocess.run(cli, capture_output=True, text=True)
    assert (
        refused.returncode == 2
        and "built by user code" in refused.stderr
        and not (tmp_path / "again.onnx").exists()
    )
    assert subprocess.run([*cli, "--trust-code"], capture_output=True, text=True).returncode == 0


# ------------------------------------------------------------------------- torchvision pretrained weights
@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """resnet18 'pretrained' weights (random, seeded) at the file torchvision would download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    w = torchvision.models.ResNet18_Weights.DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
    path.parent.mkdir(parents=True)
    torch.manual_seed(123)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_tv_weights_really_load(fake_hub):
    reference = torchvision.models.resnet18()
    reference.load_state_dict(torch.load(fake_hub, weights_only=True))
    with pytest.warns(UserWarning, match="not the published weights"):
        model, info = initial_model(ModelSpec("tv:resnet18", 1000, 3, 224, weights="IMAGENET1K_V1"))
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(model.eval()(x), reference.eval()(x)) and info["head_replaced"] == []
    five, info = initial_model(ModelSpec("tv:resnet18", 5, 3, 224, weights="IMAGENET1K_V1"))
    assert info["head_replaced"] == ["fc.bias", "fc.weight"]
    assert torch.equal(five.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_tv_weights_not_cached_is_one_line(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert (
        main(
            [
                "compress",
                "tv:resnet18",
                "--weights",
                "DEFAULT",
                "--criterion",
                "l1",
                "--sparsity",
                "0.3",
                "--dataset",
                "synthetic",
                "--epochs",
                "0",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert (
        "place resnet18-f37072fd.pth at" in err and str(tmp_path / "empty") in err and "--checkpoint" in err
    )
    assert not (tmp_path / "out").exists()


def test_tv_resnet18_pretrained_on_an_image_folder_exports_at_224(fake_hub, tmp_path):
    folder = image_folder(tmp_path / "imgs", n_train=4, n_test=2)
    out = tmp_path / "out"
    assert (
        main(
            [
                "compress",
                "tv:resnet18",
                "--weights",
                "DEFAULT",
                "--criterion",
                "l1",
                "--sparsity",
                "0.3",
                "--dataset",
                f"imagefolder:{folder}",
                "--epochs",
                "0",
                "--finetune-epochs",
                "0",
                "--no-bench",
                "--workers",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["model_source"]["weights"] == "IMAGENET1K_V1"
    assert report["model_source"]["head_replaced"] == ["fc.bias", "fc.weight"]
    assert report["onnx"]["max_abs_diff"] < 1e-4
    import onnx

    proto = onnx.load(str(out / "model.onnx"))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 224, 224]
    md = {p.key: json.loads(p.value) if p.key in ("mean", "std") else p.value for p in proto.metadata_props}
    assert md["mean"] == pytest.approx([0.485, 0.456, 0.406])


# ----------------------------------------------------------------------------------------------- timm
def test_timm_model_prunes_and_unknown_name_says_how_to_list():
    pytest.importorskip("timm")
    model = build_model(ModelSpec("timm:resnet18", num_classes=3, image_size=64))
    res = filterprune.prune(model, torch.randn(1, 3, 64, 64), "l1", 0.4, round_to=1)
    assert res.model.fc.out_features == 3 and res.removed
    with pytest.raises(UsageError, match=r"unknown timm model 'resnet9000'.*timm.list_models"):
        build_model(ModelSpec("timm:resnet9000"))


def test_a_sweep_file_takes_a_factory_with_model_args_and_ignore_layers(user_net, tmp_path):
    from filterprune.sweep.grid import load_sweep

    cfg = tmp_path / "mine.yaml"
    cfg.write_text(
        f"base: {{criterion: l1, sparsity: 0.4, dataset: synthetic, model_args: {{width: 8}}, "
        f"ignore_layers: [branch]}}\ngrid:\n  model: ['{user_net}:build', resnet20]\n"
        "include:\n  - {model: resnet20, model_args: null, ignore_layers: [conv1]}\n"
    )
    runs = load_sweep(cfg).runs
    assert len(runs) == 3
    mine = next(r.config for r in runs if r.config["model"].endswith(":build"))
    assert mine["model_args"] == {"width": 8} and mine["ignore_layers"] == ["branch"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {criterion: l1, sparsity: 0.4, model_args: 3}\ngrid: {model: [resnet20]}\n")
    with pytest.raises(UsageError, match="model_args: expected a mapping or null"):
        load_sweep(bad)


def test_timm_imagenet_checkpoint_on_other_classes_keeps_all_but_the_head(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    src = timm.create_model("resnet18", num_classes=1000)
    torch.save(src.state_dict(), tmp_path / "imagenet.pth")
    from filterprune.baseline import load_checkpoint_into

    spec = ModelSpec("timm:resnet18", num_classes=10, image_size=32)
    model = load_checkpoint_into(spec, str(tmp_path / "imagenet.pth"))
    assert model.filterprune_loaded == {"head_replaced": ["fc.bias", "fc.weight"]}
    assert (
        torch.equal(model.layer3[0].conv1.weight, src.layer3[0].conv1.weight) and model.fc.out_features == 10
    )
    with pytest.raises(UsageError, match="does not match"):  # a registered model stays strict
        load_checkpoint_into(ModelSpec("resnet18", num_classes=10), str(tmp_path / "imagenet.pth"))


def test_compress_a_module_in_hand_on_an_image_folder(tmp_path):
    mod = _net_module()
    torch.manual_seed(0)
    folder = image_folder(tmp_path / "imgs", n_train=5, n_test=2)
    out = filterprune.compress(
        model=mod.build(num_classes=2),
        dataset=f"imagefolder:{folder}",
        image_size=40,
        workers=0,
        criterion="greedy",
        sparsity=0.3,
        finetune_epochs=1,
        batch_size=4,
        calib_batches=2,
        bench=False,
        out=str(tmp_path / "run"),
        round_to=1,
    )
    report = json.loads((out.out / "report.json").read_text())
    assert report["model_source"]["input_shape"] == [3, 40, 40] and report["dataset"]["test"] == 4
    assert report["pruned"]["macs"] < report["dense"]["macs"] and report["onnx"]["max_abs_diff"] < 1e-4
    with pytest.raises(UsageError, match="scratch= retrains"):
        filterprune.compress(
            model=mod.build(num_classes=2), dataset="synthetic", criterion="l1", scratch=True, round_to=1
        )

"""Deployment: torchvision families prune and export with parity, `filterprune export`, models that
torch-pruning cannot fully handle, and the standalone deploy kit `export/run_onnx.py`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from filterprune.cli import main
from filterprune.criteria import PruneContext, make_criterion
from filterprune.data import ImageData
from filterprune.errors import UsageError
from filterprune.exporting.convert import check_parity, export_onnx, session
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune
from filterprune.pruning.safety import forward_failure

ROOT = Path(__file__).resolve().parents[1]
RUN_ONNX = ROOT / "export" / "run_onnx.py"


# ------------------------------------------------------------------ torchvision families, parity
def small_densenet(*_):
    """torchvision's DenseNet class (concat dependencies) at a size a unit test can afford."""
    import torchvision

    return torchvision.models.DenseNet(
        growth_rate=8, block_config=(2, 2, 2), num_init_features=16, num_classes=10
    )


@pytest.mark.parametrize(
    "name",
    [
        "vgg11",
        "tv:resnet18",
        "tv:mobilenet_v2",
        "tv:mobilenet_v3_small",
        "tv:efficientnet_b0",
        "densenet",
        "tv:regnet_x_400mf",
    ],
)
def test_family_prunes_and_exports_with_parity(tmp_path, name):
    torch.manual_seed(0)
    model = (small_densenet() if name == "densenet" else build_model(ModelSpec(name, 10, 3, 32))).eval()
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    result = prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, 3, 32, 32)), 10)
    after = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert sum(after) < 0.75 * sum(widths) and not result.unprunable
    path = export_onnx(model, tmp_path / "m.onnx", (3, 32, 32))
    parity = check_parity(model, path, (3, 32, 32))
    assert parity["batches"] == [1, 7] and parity["max_rel_diff"] <= 1e-4
    assert parity["max_abs_diff"] <= 1e-4 * parity["output_scale"]  # also against tiny random-init logits


def small_swin(v2: bool):
    """torchvision's SwinTransformer (v1 or v2 blocks) at a size a unit test can afford."""
    import torchvision.models.swin_transformer as sw

    extra = {"block": sw.SwinTransformerBlockV2, "downsample_layer": sw.PatchMergingV2} if v2 else {}
    return sw.SwinTransformer(
        patch_size=[4, 4],
        embed_dim=16,
        depths=[1, 1],
        num_heads=[2, 2],
        window_size=[4, 4],
        num_classes=10,
        **extra,
    )


def small_maxvit():
    import torchvision

    return torchvision.models.MaxVit(
        input_size=(64, 64),
        stem_channels=16,
        partition_size=4,
        block_channels=[16, 32],
        block_layers=[1, 1],
        head_dim=8,
        stochastic_depth_prob=0.0,
        num_classes=10,
    )


@pytest.mark.parametrize("name", ["tv:shufflenet_v2_x0_5", "swin", "swin_v2", "maxvit"])
def test_families_with_reshapes_torch_pruning_cannot_map_prune_around_them(tmp_path, name):
    """ShuffleNetV2's channel shuffle and attention's head reshapes (Swin, MaxViT) are opaque to the
    graph: the groups through them stay whole and are named; every other group is pruned, with parity."""
    from filterprune.benchmarking.counting import count

    torch.manual_seed(0)
    model = {
        "swin": lambda: small_swin(False),
        "swin_v2": lambda: small_swin(True),
        "maxvit": small_maxvit,
    }.get(name, lambda: build_model(ModelSpec(name, 10, 3, 64)))().eval()
    shape = (3, 64, 64)
    dense = count(model, shape).macs
    result = prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, *shape)), 10)
    assert count(model, shape).macs < 0.8 * dense  # channels really removed
    assert any("cannot map channel by channel" in why for why in result.unprunable.values())
    path = export_onnx(model, tmp_path / "m.onnx", shape)
    parity = check_parity(model, path, shape)
    assert parity["batches"] == [1, 7] and parity["max_rel_diff"] <= 1e-4
    assert parity["max_abs_diff"] <= 1e-4 * parity["output_scale"]


def test_shufflenet_leaves_the_channel_shuffle_groups_whole_and_names_them(tmp_path):
    from filterprune import serialization as checkpoint

    spec = ModelSpec("tv:shufflenet_v2_x0_5", 10, 3, 64)
    model = build_model(spec).eval()
    result = prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, 3, 64, 64)), 10)
    checkpoint.save(model, tmp_path / "pruned", spec, result.history)  # the history replays through the graph
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(checkpoint.load(tmp_path / "pruned.json")(x), model(x))
    why = result.unprunable["stage2.1.branch2.5"]
    assert why.startswith(
        "its channels pass a reshape (ViewBackward0) that torch-pruning cannot map channel by "
        "channel ((1, 48, 8, 8) -> (1, 2, 24, 8, 8)) after layer stage2.1.branch2"
    )
    widths = {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert (
        widths["stage2.1.branch2.0"] == 15 and widths["stage2.1.branch2.3"] == 15
    )  # inside a branch: 24 -> 15
    assert widths["stage2.1.branch2.5"] == 24  # feeds the shuffle: whole


class DictConv(nn.Conv2d):
    """A layer that returns a dict: torch-pruning's trace hook reads ``output.grad_fn`` and cannot."""

    def forward(self, x):
        return {"out": super().forward(x)}


class ReturnsDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.head = DictConv(3, 8, 3), nn.Linear(8, 10)

    def forward(self, x):
        return self.head(self.stem(x)["out"].mean((2, 3)))


def test_a_model_torch_pruning_cannot_trace_is_one_usage_error():
    with pytest.raises(
        UsageError,
        match=r"^could not trace ReturnsDict into a dependency graph \(AttributeError in "
        r"torch-pruning's _record_grad_fn: .*cannot be pruned structurally$",
    ):
        prune(
            ReturnsDict(), make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, 3, 16, 16)), 10
        )


def test_flatten_in_front_of_a_linear_prunes_the_linear_in_blocks_of_h_times_w():
    """The one reshape torch-pruning maps itself: (N, C, H, W) -> (N, C*H*W) removes H*W inputs per channel."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 10, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(10, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()
    x = torch.randn(2, 3, 8, 8)
    result = prune(model, make_criterion("l1"), PlanConfig(0.5), PruneContext(x[:1]), 10)
    assert model[2].out_channels == 4 and model[5].in_features == 4 * 16 and not result.unprunable
    assert model(x).shape == (2, 10)


# ------------------------------------------------------------------ groups that break the forward
class FixedWidthReshape(nn.Module):
    """Reshapes by a width stored as a plain int, as torchvision's ViT does with ``hidden_dim``:
    torch-pruning shrinks ``proj`` but cannot know about ``self.width``."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.proj = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.width = 32
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        x = self.proj(torch.relu(self.stem(x)))
        return self.head(x.reshape(x.shape[0], self.width, x.shape[2] * x.shape[3]).mean(-1))


@pytest.mark.parametrize("criterion", ["l1", "greedy"])  # greedy prunes group by group, then applies alike
def test_groups_that_break_the_forward_are_left_whole_and_named(tmp_path, criterion):
    torch.manual_seed(0)
    model = FixedWidthReshape()
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    data = ImageData(
        "t", x, torch.arange(16) % 10, x[:4], torch.arange(4), [str(i) for i in range(10)], source="t"
    )
    ctx = PruneContext(torch.randn(1, 3, 16, 16), data=data, batch_size=8, calib_batches=1)
    result = prune(model, make_criterion(criterion), PlanConfig(0.5), ctx, 10)
    assert list(result.unprunable) == ["proj"] and "in the model's own forward" in result.unprunable["proj"]
    assert model.stem.out_channels == 8 and model.proj.out_channels == 32  # the rest is still pruned
    assert (
        check_parity(model, export_onnx(model, tmp_path / "m.onnx", (3, 16, 16)), (3, 16, 16))["max_rel_diff"]
        < 1e-4
    )


def test_forward_failure_names_the_innermost_layer():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 8, 3)))
    reason = forward_failure(model, torch.randn(1, 3, 8, 8))
    assert reason.startswith("RuntimeError") and "layer '1.1' (Conv2d)" in reason
    assert forward_failure(nn.Conv2d(3, 4, 1), torch.randn(1, 3, 4, 4)) is None
    assert "output shape changed" in forward_failure(
        nn.Conv2d(3, 4, 1), torch.randn(1, 3, 4, 4), (1, 5, 4, 4)
    )


# ------------------------------------------------------------------ filterprune export
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "run"
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
                "digits",
                "--epochs",
                "0",
                "--finetune-epochs",
                "0",
                "--no-bench",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def _meta(path) -> dict:
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def test_export_dynamic_batch_with_metadata(run_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    proto = onnx.load(out)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    md = _meta(out)
    report = json.loads((run_dir / "report.json").read_text())
    assert md["model"] == "resnet20" and json.loads(md["input_shape"]) == [-1, 3, 32, 32]
    assert md["criterion"] == "l1" and float(md["sparsity"]) == 0.4 and md["filterprune_version"]
    assert len(json.loads(md["mean"])) == 3 and json.loads(md["class_names"])[:2] == ["0", "1"]
    assert (
        int(md["dense_macs"]) == report["dense"]["macs"]
        and int(md["pruned_macs"]) == report["pruned"]["macs"]
    )
    assert int(md["pruned_params"]) == report["pruned"]["params"] < int(md["dense_params"])
    assert _meta(run_dir / "model.onnx") == md  # compress and export write the same metadata


def test_export_fixed_batch_fp16_and_simplified(run_dir, tmp_path):
    import filterprune

    model = filterprune.load(run_dir)
    x = torch.randn(3, 3, 32, 32)
    ref = model(x).detach().numpy()
    assert (
        main(
            [
                "export",
                str(run_dir),
                "--out",
                str(tmp_path / "h.onnx"),
                "--batch",
                "3",
                "--fp16",
                "--opset",
                "13",
            ]
        )
        == 0
    )
    proto = onnx.load(tmp_path / "h.onnx")
    assert proto.opset_import[0].version == 13
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [3, 3, 32, 32]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    half = session(tmp_path / "h.onnx").run(None, {"input": x.half().numpy()})[0].astype(np.float32)
    assert np.abs(half - ref).max() <= 1e-2 * max(1.0, np.abs(ref).max())
    assert main(["export", str(run_dir), "--out", str(tmp_path / "s.onnx"), "--simplify"]) == 0
    slim = onnx.load(tmp_path / "s.onnx")
    assert slim.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert _meta(tmp_path / "s.onnx")["model"] == "resnet20"
    out = session(tmp_path / "s.onnx").run(None, {"input": x.numpy()})[0]
    assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


def test_export_parity_failure_writes_nothing(run_dir, tmp_path, monkeypatch, capsys):
    import filterprune.exporting.command as deploy

    monkeypatch.setattr(deploy, "PARITY_TOL", -1.0)
    assert main(["export", str(run_dir), "--out", str(tmp_path / "m.onnx")]) == 1
    assert "ONNX parity failed: max difference" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,needle",
    [
        (["/nope"], "not found: /nope"),
        (["{run}", "--batch", "many"], "expected 'dynamic' or an integer"),
        (["{run}", "--batch", "0"], "--batch must be"),
        (["{run}", "--opset", "5"], "--opset must be in"),
        (["{run}", "--out", "{run}"], "is a folder"),
        (["{run}", "--out", "{run}/report.json"], "already exists"),
        (["{tmp}"], "no pruned.json or model.json"),
    ],
)
def test_export_bad_input_is_one_line_exit_2(run_dir, tmp_path, args, needle, capsys):
    args = [a.format(run=run_dir, tmp=tmp_path) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "m.onnx")]
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


# ------------------------------------------------------------------ the deploy kit
@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return sorted(folder.glob("*.png"))


def run_kit(*args, python=sys.executable, env=None):
    return subprocess.run(
        [str(python), str(RUN_ONNX), *map(str, args)], capture_output=True, text=True, env=env
    )


def test_run_onnx_classifies_with_the_files_preprocessing(run_dir, images):
    from PIL import Image

    import filterprune

    p = run_kit(run_dir / "model.onnx", *images, "--iters", "3", "--warmup", "1")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("resnet20; pruned with l1 at channel sparsity 0.4; MACs")
    assert lines[1] == str(images[0]) and len(lines) == 1 + 2 * 6 + 1
    assert lines[-1].startswith("latency: batch 1, CPUExecutionProvider, 3 calls") and "median" in lines[-1]
    # the kit's top-1 is the PyTorch model's top-1 under the training pipeline's preprocessing
    md = json.loads((run_dir / "pruned.json").read_text())["meta"]
    img = np.asarray(Image.open(images[0]).convert("RGB").resize((32, 32)), dtype=np.float32) / 255
    x = (
        torch.from_numpy(img).permute(2, 0, 1)[None] - torch.tensor(md["mean"]).view(1, 3, 1, 1)
    ) / torch.tensor(md["std"]).view(1, 3, 1, 1)
    top = int(filterprune.load(run_dir)(x).argmax())
    assert lines[2].split()[1] == md["class_names"][top]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["{run}/report.json"], "is not a loadable ONNX model"),
        (["/nope.onnx"], "model file not found"),
        (["{run}/model.onnx", "--provider", "warp9"], "unknown provider 'warp9'"),
        (["{run}/model.onnx", "/nope.png"], "image not found"),
        (["{run}/model.onnx", "{run}/pruned.json"], "not a readable image"),
        (["{run}/model.onnx", "--iters", "0"], "must be >= 1"),
    ],
)
def test_run_onnx_bad_input_is_one_line_exit_2(run_dir, args, needle):
    p = run_kit(*[a.format(run=run_dir) for a in args])
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.slow
def test_run_onnx_needs_only_onnxruntime_numpy_pillow(run_dir, images, tmp_path):
    """A fresh venv without torch or filterprune (pip's cache makes the install quick)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of this checkout leaks in
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "onnxruntime", "numpy", "pillow"], check=True, env=env
    )
    for module in ("torch", "filterprune"):
        assert (
            subprocess.run(
                [str(py), "-c", f"import {module}"], capture_output=True, cwd=tmp_path, env=env
            ).returncode
            != 0
        )
    p = run_kit(run_dir / "model.onnx", images[0], python=py, env=env)
    assert p.returncode == 0, p.stderr
    assert "  5. " in p.stdout and "latency: batch 1" in p.stdout
    assert run_kit(run_dir / "model.onnx", "--provider", "nope", python=py, env=env).returncode == 2

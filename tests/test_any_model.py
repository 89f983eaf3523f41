"""Pruning, exporting and timing any model from Python: outputs that are tuples, dicts or nests of tensors;
inputs that are several tensors, keywords, lists of images or non-square; per-layer ratios; step-by-step
pruning in the user's own loop (``Pruner``); the Taylor criterion on the user's loss; ``filterprune.export``
with parity and metadata. The detectors (torchvision, ultralytics YOLO) are the slow tests at the end."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import filterprune
from filterprune.errors import RunError, UsageError
from filterprune.example import structure
from filterprune.pruning.graph import build_graph

ROOT = Path(__file__).resolve().parents[1]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class TwoHeads(nn.Module):
    """A tiny detector: a trunk, a box head (4 anchors x 4 coordinates) and a class head (4 x 3 classes),
    returned as a dict inside a tuple beside the features."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(_block(3, 16), _block(16, 32))
        self.box = nn.Conv2d(32, 16, 1)
        self.cls = nn.Conv2d(32, 12, 1)

    def forward(self, x):
        f = self.trunk(x)
        return {"boxes": self.box(f).flatten(2), "scores": self.cls(f).sigmoid()}, f


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = _block(3, 16), _block(1, 16)
        self.mix = _block(16, 24)
        self.head = nn.Linear(24, 5)

    def forward(self, image, depth, scale: float = 1.0):
        return self.head(self.mix(self.a(image) + self.b(depth)).mean((2, 3))) * scale


class ListOfImages(nn.Module):
    """torchvision's detection convention: a list of (C, H, W) images in, a list of dicts out."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(_block(3, 16), _block(16, 16))
        self.head = nn.Conv2d(16, 8, 1)

    def forward(self, images):
        feats = self.head(self.trunk(torch.stack(images)))
        return [{"map": f} for f in feats]


def _widths(model: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_a_nested_output_keeps_its_structure_and_every_head_whole():
    torch.manual_seed(0)
    model, x = TwoHeads().eval(), torch.randn(1, 3, 24, 40)  # non-square
    before = structure(model(x))
    r = filterprune.prune(model, x, "l1", 0.5, round_to=1)
    assert structure(model(x)) == before  # same nesting, same widths past the batch axis
    w = _widths(model)
    assert w["box"] == 16 and w["cls"] == 12  # both prediction layers whole
    assert w["trunk.0.0"] == 8  # the trunk's first layer halved (its last feeds an output: whole)
    assert r.pruned["macs"] < r.dense["macs"] and r.removed == {"trunk.0.0": 8}


class ChunkReadTogether(nn.Module):
    """YOLOv8's C2f in small: ``a, b = cv1(x).chunk(2)``, a residual bottleneck on ``b``, and
    ``cat([a, b, b + m(b)])``: the pieces are read together and out of order. ``shortcut=False``: the
    neck's C2f, ``cat([a, b, m(b)])``."""

    def __init__(self, c: int = 8, shortcut: bool = True):
        super().__init__()
        self.shortcut = shortcut
        self.cv1 = nn.Conv2d(3, 2 * c, 1, bias=False)
        self.m1, self.m2 = (
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
        )
        self.cv2 = nn.Conv2d(3 * c, 6, 1)

    def forward(self, x):
        a, b = F.relu(self.cv1(x)).chunk(2, 1)
        m = self.m2(F.relu(self.m1(b)))
        return self.cv2(torch.cat([a, b, b + m if self.shortcut else m], 1))


def test_a_chunk_read_together_prunes_the_same_positions_from_every_piece():
    """Positions 1 and 5 of both pieces (and of the bottleneck) compute zeros: l1 removes exactly them,
    in every piece, so the pruned model computes what the dense one did (a wrong channel removed from the
    concat's reader would change it) and the chunk still halves its input."""
    torch.manual_seed(0)
    model, x = ChunkReadTogether().eval(), torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        for conv, rows in ((model.cv1, [1, 5, 9, 13]), (model.m1, [2, 3]), (model.m2, [1, 5])):
            conv.weight[rows] = 0
        before = model(x)
    r = filterprune.prune(model, x, "l1", 0.25, round_to=1, layer_floor=0.1)
    assert _widths(model) == {"cv1": 12, "m1": 6, "m2": 6, "cv2": 6} and model.cv2.in_channels == 18
    assert r.unprunable == {}
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6)


@pytest.mark.parametrize(
    "shortcut, ratio, removed",
    [
        (False, 0.25, [1, 5]),
        (False, 0.5, [1, 2, 5, 6]),
        (False, 0.625, [0, 1, 2, 5, 6]),
        (True, 0.5, [1, 2, 5, 6]),
    ],
)
def test_a_chunk_read_together_loses_half_or_more_of_its_positions_exactly(shortcut, ratio, removed):
    """A position of a chunk read together is one input channel of the layer reading one piece, though two
    of the chunked layer's channels: half of them leave that reader half its inputs (it was left whole,
    said to be emptied; at fewer, it recorded fewer inputs than its weight kept), also as ``load`` replays
    the history. The removed positions compute zeros and score zero, so the pruned model computes what the
    dense one did."""
    torch.manual_seed(0)
    model, x, n = ChunkReadTogether(shortcut=shortcut).eval(), torch.rand(2, 3, 12, 12), len(removed)
    both, third = removed + [p + 8 for p in removed], [p + 16 for p in removed] if shortcut else []
    with torch.no_grad():
        model.cv1.weight[both] = 0
        model.m1.weight[:, removed] = 0
        model.m2.weight[removed if shortcut else []] = 0  # the residual's other term
        model.cv2.weight[:, both + third] = 0
        before = model(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = filterprune.prune(
            model, x, "l1", ratios={"cv1": ratio, "m1": 0.0, "m2": 0.0}, round_to=1, layer_floor=0.1
        )
    assert r.unprunable == {} and not [w for w in caught if "left unpruned" in str(w.message)]
    assert {k: (m.in_channels, m.out_channels) for k, m in model.named_modules() if k} == {
        "cv1": (3, 16 - 2 * n),
        "m1": (8 - n, 8),
        "m2": (8, 8 - n if shortcut else 8),
        "cv2": (24 - 2 * n - len(third), 6),
    }
    again = ChunkReadTogether(shortcut=shortcut)
    build_graph(again, x).load_pruning_history(r.history)  # as ``load`` replays it
    again.load_state_dict(model.state_dict())
    for net in (model, again):
        layers = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert all(tuple(m.weight.shape[:2]) == (m.out_channels, m.in_channels) for m in layers)
        with torch.no_grad():
            assert torch.allclose(net(x), before, atol=1e-6)


def test_several_inputs_keyword_inputs_and_a_list_of_images():
    torch.manual_seed(0)
    img, depth = torch.randn(1, 3, 16, 16), torch.randn(1, 1, 16, 16)
    for example in ((img, depth), {"image": img, "depth": depth}):
        model = TwoInputs().eval()
        r = filterprune.prune(model, example, "l1", 0.5, round_to=1)
        assert _widths(model)["a.0"] == 8 and _widths(model)["b.0"] == 8  # coupled through the add
        assert model(img, depth).shape == (1, 5) and r.theoretical_speedup > 1.5
    model = ListOfImages().eval()
    images = [torch.randn(3, 20, 28), torch.randn(3, 20, 28)]
    filterprune.prune(model, images, "l1", 0.5, round_to=1)
    out = model(images)
    assert len(out) == 2 and out[0]["map"].shape == (8, 20, 28) and _widths(model)["trunk.0.0"] == 8


def test_a_head_whose_output_is_detached_is_kept_whole_and_its_inputs_shrink():
    """A region-proposal head computes proposals that are detached before they are used: nothing the model
    returns depends on its layers' gradients, yet its width is the anchors' and its inputs must shrink."""

    class Proposals(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(_block(3, 16), _block(16, 16))
            self.rpn = nn.Sequential(_block(16, 16), nn.Conv2d(16, 6, 1))
            self.out = nn.Conv2d(16, 4, 1)

        def forward(self, x):
            f = self.trunk(x)
            gate = self.rpn(f).detach().sigmoid().mean(1, keepdim=True)
            return self.out(f) * gate

    torch.manual_seed(0)
    model, x = Proposals().eval(), torch.randn(1, 3, 16, 16)
    filterprune.prune(model, x, "l1", 0.5, round_to=1)
    w = _widths(model)
    assert w["rpn.1"] == 6 and w["out"] == 4 and w["rpn.0.0"] == 8 and w["trunk.0.0"] == 8
    assert model(x).shape == (1, 4, 16, 16)


def test_ratios_per_layer_by_name_or_module_and_bad_ones_refused():
    torch.manual_seed(0)
    model, x = TwoHeads().eval(), torch.randn(1, 3, 16, 16)
    filterprune.prune(model, x, "l1", 0.25, ratios={model.trunk[0]: 0.75}, round_to=1)
    assert _widths(model)["trunk.0.0"] == 4
    model = TwoInputs().eval()
    filterprune.prune(model, (x, x[:, :1]), "l1", 0.5, ratios={"mix": 0.0, "a": 0.25}, round_to=1)
    assert _widths(model)["mix.0"] == 24 and _widths(model)["a.0"] == 12  # a is coupled to b: a's ratio
    for bad, said in (({"nope": 0.5}, "not a layer"), ({"trunk": 1.0}, r"in \[0, 1\)"), ([0.5], "dict")):
        with pytest.raises(UsageError, match=said) as e:
            filterprune.prune(TwoHeads(), x, "l1", 0.5, ratios=bad, round_to=1)
        assert e.value.params == ("ratios",)


def test_example_inputs_the_model_cannot_take_are_one_line_in_python_words():
    with pytest.raises(UsageError, match="must be a tensor, a tuple") as e:
        filterprune.prune(TwoHeads(), "images", "l1", 0.5, round_to=1)
    assert e.value.params == ("example_inputs",)
    with pytest.raises(UsageError, match=r"does not run on example_inputs \(\(1, 3, 8, 8\), \(1, 3, 8, 8\);"):
        filterprune.prune(
            TwoHeads(), (torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)), "l1", 0.5, round_to=1
        )
    with pytest.raises(UsageError, match="target_speedup, target_latency and round_to='auto' time"):
        filterprune.prune(ListOfImages(), [torch.randn(3, 8, 8)], "l1", target_speedup=1.5, round_to=1)
    with pytest.raises(UsageError, match="calib= feeds classification batches"):
        filterprune.prune(TwoHeads(), torch.randn(1, 3, 8, 8), "greedy", 0.5, calib=[(1, 2)], round_to=1)


def test_pruner_steps_reach_what_one_prune_reaches():
    torch.manual_seed(0)
    dense = TwoHeads().eval()
    x = torch.randn(1, 3, 16, 16)
    once = filterprune.prune(dense, x, "l1", 0.5, inplace=False, round_to=1).model
    model = TwoHeads().eval()
    model.load_state_dict(dense.state_dict())
    pruner = filterprune.Pruner(model, x, "l1", sparsity=0.5, steps=2, round_to=1)
    seen = []
    for _ in range(pruner.steps):
        done = pruner.step()  # the user's training would run here
        seen.append((done.removed, done.theoretical_speedup))
    assert seen[0][0] == {"trunk.0.0": 4} and seen[1][0] == {"trunk.0.0": 4} and seen[1][1] > seen[0][1] > 1
    assert _widths(model) == _widths(once)
    with pytest.raises(UsageError, match="all 2 steps are done"):
        pruner.step()
    with pytest.raises(UsageError, match="unknown keyword"):
        filterprune.Pruner(TwoHeads(), x, "l1", 0.5, sparsity_ratio=0.2, round_to=1)


def _classification_loader(n: int = 16, classes: int = 5) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, classes, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8)


def test_taylor_scores_with_cross_entropy_or_the_users_loss():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 16, 16)
    model = TwoInputs().eval()
    clf = nn.Sequential(model.a, model.mix, nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.head)
    state = {k: v.clone() for k, v in clf.state_dict().items()}
    r = filterprune.prune(clf, x, "taylor", 0.5, calib=_classification_loader(), round_to=1)
    assert r.removed and clf(x).shape == (1, 5)
    assert {
        k
        for k, v in clf.state_dict().items()
        if k in state and v.shape == state[k].shape and not torch.equal(v, state[k]) and "running" not in k
    } == set()  # scored on a copy: weights untouched

    def loss(net, batch):  # a detector's own loss: any batches, any outputs
        images, targets = batch
        out, _ = net(images)
        return F.mse_loss(out["scores"].mean((2, 3)), targets)

    batches = [(torch.randn(4, 3, 16, 16), torch.rand(4, 12)) for _ in range(2)]
    det = TwoHeads()
    filterprune.prune(det, x, "taylor", 0.5, calib=batches, loss=loss, round_to=1)
    assert _widths(det)["trunk.0.0"] == 8 and _widths(det)["cls"] == 12
    with pytest.raises(UsageError, match="criterion 'taylor' differentiates a loss") as e:
        filterprune.prune(TwoHeads(), x, "taylor", 0.5, calib=batches, round_to=1)
    assert "loss" in e.value.params
    with pytest.raises(UsageError, match="must return a scalar tensor"):
        filterprune.prune(TwoHeads(), x, "taylor", 0.5, calib=batches, loss=lambda m, b: 1.0, round_to=1)


def test_export_names_every_output_proves_parity_and_writes_metadata(tmp_path):
    torch.manual_seed(0)
    model, x = TwoHeads().eval(), torch.randn(1, 3, 16, 24)
    filterprune.prune(model, x, "l1", 0.5, round_to=1)
    r = filterprune.export(model, tmp_path / "det.onnx", x, mean=[0.5] * 3, std=[0.25] * 3)
    assert r["outputs"] == ["out_0_boxes", "out_0_scores", "out_1"] and r["parity"]["max_rel_diff"] < 1e-4
    proto = onnx.load(str(tmp_path / "det.onnx"))
    md = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(md["input_shape"]) == [-1, 3, 16, 24] and json.loads(md["mean"]) == [0.5] * 3
    assert [o.name for o in proto.graph.output] == r["outputs"]
    two = TwoInputs().eval()
    r = filterprune.export(two, tmp_path / "two.onnx", (x, x[:, :1]))
    assert r["outputs"] == ["logits"] and len(onnx.load(str(tmp_path / "two.onnx")).graph.input) == 2
    with pytest.raises(UsageError, match="mean must give one value per input channel") as e:
        filterprune.export(model, tmp_path / "bad.onnx", x, mean=[0.5, 0.5])
    assert e.value.params == ("mean",) and not (tmp_path / "bad.onnx").exists()


def test_export_checks_parity_on_inputs_in_the_examples_range(tmp_path, monkeypatch):
    """A model that takes [0, 1] images is checked on [0, 1] images: on N(0, 1) a random YOLO11's box
    logits reach 8,900 and its faithful file failed parity. A normalised example keeps N(0, 1)."""
    from filterprune import ship

    seen, real = [], ship.compare
    monkeypatch.setattr(
        ship,
        "compare",
        lambda m, p, feeds, tol: seen.append([f.args[0] for f in feeds]) or real(m, p, feeds, tol),
    )
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    for x in (torch.rand(1, 3, 8, 8), torch.randn(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 255):
        filterprune.export(model, tmp_path / "m.onnx", x)
    unit, normal, pixels = seen
    assert [t.shape[0] for t in unit] == [1, 7] and all(t.min() >= 0 and t.max() < 1 for t in unit)
    assert all(t.min() < 0 for t in normal)
    assert all(t.min() >= 0 and 100 < t.max() < 255 for t in pixels)


def test_export_refuses_a_file_that_computes_something_else(tmp_path, monkeypatch):
    from filterprune.exporting import parity

    model, x = TwoHeads().eval(), torch.randn(1, 3, 8, 8)
    real = parity.session

    def drifting(proto):
        sess = real(proto)
        run = sess.run
        return type(
            "S", (), {"get_inputs": sess.get_inputs, "run": lambda s, o, f: [a + 1 for a in run(o, f)]}
        )()

    monkeypatch.setattr(parity, "session", drifting)
    with pytest.raises(RunError, match=r"ONNX parity failed: output \S+ differs by 1 "):
        filterprune.export(model, tmp_path / "m.onnx", x)
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_of_a_python_pruned_model_advises_calls_that_exist(tmp_path):
    model = nn.Sequential(_block(3, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    filterprune.save(
        filterprune.prune(model, torch.randn(1, 3, 8, 8), "l1", 0.5, round_to=1).model, tmp_path / "run"
    )
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "filterprune",
            "export",
            str(tmp_path / "run"),
            "--out",
            str(tmp_path / "m.onnx"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode == 2 and "filterprune.export(model, PATH, example_inputs)" in p.stderr
    importlib.import_module("filterprune.benchmarking.command")  # the packages' modules load ...
    importlib.import_module("filterprune.exporting.convert")  # ... and do not shadow the functions

    for call in ("load", "export", "bench"):
        assert callable(getattr(filterprune, call)) and not isinstance(getattr(filterprune, call), type(os))


# ------------------------------------------------------------------ detectors (slow: tens of seconds each)
def _yolo():
    """ultralytics' YOLOv8n built from its yaml, offline (no settings sync, no hub check), imported the way
    filterprune imports it (its process-wide patches undone)."""
    from filterprune.models.yolo import _ultralytics

    _ultralytics()
    from ultralytics import YOLO

    return YOLO("yolov8n.yaml").model


def _torchvision(name: str) -> nn.Module:
    from torchvision.models import detection

    return getattr(detection, name)(weights=None, weights_backbone=None, num_classes=10)


def _heads(model: nn.Module, names: tuple[str, ...]) -> dict[str, int]:
    return {
        n: getattr(m, "out_channels", getattr(m, "out_features", None))
        for n, m in model.named_modules()
        if n.endswith(names) and isinstance(m, (nn.Conv2d, nn.Linear))
    }


_DETECTORS = {
    "ssdlite": (
        "ssdlite320_mobilenet_v3_large",
        ("classification_head.module_list.0.1", "regression_head.module_list.0.1"),
    ),
    "fasterrcnn": ("fasterrcnn_mobilenet_v3_large_320_fpn", ("cls_score", "bbox_pred", "cls_logits")),
}


@pytest.mark.slow
@pytest.mark.parametrize("which", sorted(_DETECTORS))
def test_torchvision_detectors_prune_30_percent(which):
    torch.manual_seed(0)
    name, heads = _DETECTORS[which]
    model = _torchvision(name).eval()
    images = [torch.rand(3, 320, 320)]
    with torch.no_grad():
        before = structure(model(images))
    widths = _heads(model, heads)
    r = filterprune.prune(model, images, "l1", 0.3, round_to=1)
    assert r.pruned["macs"] < 0.8 * r.dense["macs"] and _heads(model, heads) == widths and widths
    with torch.no_grad():
        assert structure(model(images)) == before or which == "fasterrcnn"  # detections vary in number
    model.train()
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 100.0, 120.0]]), "labels": torch.tensor([3])}]
    losses = model(images * 2, targets * 2)
    sum(losses.values()).backward()  # the detector's own training loss runs through the pruned layers


@pytest.mark.slow
def test_yolov8_prunes_30_percent_with_its_heads_whole():
    torch.manual_seed(0)
    model = _yolo().eval()
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        before = structure(model(x))
    head = model.model[-1]
    widths = {
        n: c.out_channels for n, c in head.named_modules() if isinstance(c, nn.Conv2d) and n.endswith(".2")
    }
    r = filterprune.prune(model, x, "l1", 0.3, round_to=1)
    with torch.no_grad():
        assert structure(model(x)) == before
    assert {n: c.out_channels for n, c in head.named_modules() if n in widths} == widths
    assert r.pruned["macs"] < 0.8 * r.dense["macs"]
    assert r.unprunable == {}  # C2f's chunk read together: folded, its positions prune from both pieces
    model.train()
    out = model(x)  # training mode: raw box bins and class scores (ultralytics 8.4: a dict)
    assert out["boxes"].shape[1] == 64 and out["scores"].shape[1] == 80


@pytest.mark.slow
def test_importing_and_building_yolo_opens_no_socket():
    code = (
        "import socket, os\n"
        "opened = []\n"
        "real = socket.socket.__init__\n"
        "def spy(self, *a, **k):\n"
        "    opened.append(a)\n"
        "    real(self, *a, **k)\n"
        "socket.socket.__init__ = spy\n"
        "os.environ['YOLO_OFFLINE'] = '1'\n"
        "from ultralytics import YOLO\n"
        "YOLO('yolov8n.yaml').model.eval()\n"
        "print(len(opened))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-500:]
    assert p.stdout.strip().splitlines()[-1] == "0"

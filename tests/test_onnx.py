import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

from filterprune.criteria import PruneContext, make_criterion
from filterprune.errors import RunError
from filterprune.exporting.convert import check_parity, export_onnx, session
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune
from filterprune.tasks import make_task


@pytest.mark.parametrize("name", ["vgg16", "resnet56", "tv:mobilenet_v2"])
def test_pruned_model_exports_with_dynamic_batch_and_parity(tmp_path, name):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name))
    prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, 3, 32, 32)), 10)
    path = export_onnx(model, tmp_path / "m.onnx", (3, 32, 32), metadata={"criterion": "l1"})
    parity = check_parity(model, path, (3, 32, 32))
    assert parity["max_rel_diff"] <= 1e-4 and parity["batches"] == [1, 7]
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert {p.key: p.value for p in proto.metadata_props}["criterion"] == "l1"
    out = session(path).run(None, {"input": np.random.rand(5, 3, 32, 32).astype(np.float32)})[0]
    assert out.shape == (5, 10)


def test_a_detectors_parity_is_checked_on_images_in_the_tasks_range(tmp_path):
    """A file that computes the model only on the inputs it takes (here: without the model's ReLU, which
    changes nothing on [0, 1] images) passes compress's check on the detection task's range and fails on
    N(0, 1), where a detector never runs (a random YOLO11's box logits reached 8,900 there)."""
    torch.manual_seed(0)
    conv, shape = nn.Conv2d(3, 4, 3).eval(), (3, 8, 8)
    model = nn.Sequential(nn.ReLU(), conv).eval()
    path = export_onnx(conv, tmp_path / "m.onnx", shape, outputs=("raw",))
    with pytest.raises(RunError, match="parity failed"):
        check_parity(model, path, shape)
    detection, classification = make_task("detection"), make_task("classification")
    assert detection.input_range == (0.0, 1.0) and classification.input_range is None
    assert check_parity(model, path, shape, input_range=detection.input_range)["max_rel_diff"] <= 1e-4
    x = detection.example_inputs(shape)
    assert x.shape == (1, *shape) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(classification.example_inputs(shape).min()) < 0  # normalised inputs: N(0, 1)


def test_a_file_returning_nan_fails_parity(tmp_path):
    """NaN compares with nothing: a file returning NaN where its model returns numbers passed parity."""
    from filterprune.exporting.convert import max_difference

    ref = np.array([1.0, 2.0, np.inf, np.nan], dtype=np.float32)
    assert max_difference(ref.copy(), ref) == 0.0  # the same NaN and infinity: a match
    assert max_difference(np.array([1.0, np.nan, np.inf, np.nan], dtype=np.float32), ref) == np.inf
    assert max_difference(np.array([1.0, 2.0, -np.inf, np.nan], dtype=np.float32), ref) == np.inf
    conv, shape = nn.Conv2d(3, 4, 3).eval(), (3, 8, 8)

    class Sqrt(nn.Module):  # NaN where the conv is negative; the model compared is the conv alone
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return torch.sqrt(self.conv(x))

    path = export_onnx(Sqrt().eval(), tmp_path / "m.onnx", shape, outputs=("raw",))
    with pytest.raises(RunError, match="parity failed"):
        check_parity(conv, path, shape)

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


class _OffRange(nn.Module):
    """Faithful on images in [0, 1]; below about -2.2 its exp overflows to inf, as a detector's box logits
    ran away (8,900) on N(0, 1) inputs it never sees."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return torch.cat([self.conv(x).flatten(1), torch.exp(-40 * x).flatten(1)], 1)


def test_a_detectors_parity_is_checked_on_images_in_the_tasks_range(tmp_path):
    model, shape = _OffRange().eval(), (3, 8, 8)
    path = export_onnx(model, tmp_path / "m.onnx", shape, outputs=("raw",))
    with pytest.raises(RunError, match="parity failed"):
        check_parity(model, path, shape)  # N(0, 1): where this model never runs
    detection, classification = make_task("detection"), make_task("classification")
    assert detection.input_range == (0.0, 1.0) and classification.input_range is None
    assert check_parity(model, path, shape, input_range=detection.input_range)["max_rel_diff"] <= 1e-4
    x = detection.example_inputs(shape)
    assert x.shape == (1, *shape) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert float(classification.example_inputs(shape).min()) < 0  # normalised inputs: N(0, 1)

import numpy as np
import onnx
import pytest
import torch

from filterprune.criteria import PruneContext, make_criterion
from filterprune.exporting.convert import check_parity, export_onnx, session
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune


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

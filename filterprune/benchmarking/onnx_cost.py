"""What a bare ONNX file costs, read from its graph when its metadata does not say: MACs of its conv and
matmul nodes and its largest activation, both per sample, from onnx shape inference (weights not loaded:
their dims suffice)."""

from __future__ import annotations

import math


def _inferred(proto):
    """The graph with its shapes inferred, or None when onnx cannot infer them."""
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - a graph onnx cannot infer: no estimate, not an error
        return None


def _dims(proto) -> dict[str, list[int]]:
    """Each inferred value's dims; an unknown (dynamic) dim counts as 1, so the batch axis is one sample."""
    return {
        v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
        for v in list(proto.graph.value_info) + list(proto.graph.output)
    }


def largest_activation(proto) -> int:
    """Values in one sample's largest intermediate or output tensor; 0 when not known."""
    inferred = _inferred(proto)
    if inferred is None:
        return 0
    return max((math.prod(d[1:]) for d in _dims(inferred).values() if d), default=0)


def macs(proto) -> int:
    """MACs of one sample through the Conv, Gemm and MatMul nodes; 0 when the shapes cannot be inferred."""
    proto = _inferred(proto)
    if proto is None:
        return 0
    dims = _dims(proto)
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    total = 0
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or not node.output or len(node.input) < 2:
            continue
        w = inits.get(node.input[1])
        if node.output[0] not in dims or not w or len(w) < 2:
            continue
        out = math.prod(dims[node.output[0]][1:])
        per_out = math.prod(w[1:]) if node.op_type == "Conv" else w[0] if node.op_type == "MatMul" else w[1]
        total += out * per_out
    return total

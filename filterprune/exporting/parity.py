"""Parity of an ONNX file with the module it was exported from, for any inputs and any nesting of
outputs: every output tensor compared, relative to its scale, as ``convert.check_parity`` does for a
classifier's logits."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ..errors import RunError
from ..example import Example, leaves
from .convert import max_difference, session


@torch.no_grad()
def compare(model: nn.Module, proto: bytes, feeds: list[Example], tol: float) -> dict:
    """Run ``model`` and the file on each example; RunError when an output differs by more than ``tol``
    relative to max(1, its largest magnitude), or when the file returns other shapes."""
    sess = session(proto)
    names = [i.name for i in sess.get_inputs()]
    worst_abs, worst_rel, where = 0.0, 0.0, ""
    for ex in feeds:
        ref = [(p, t.float().numpy()) for p, t in leaves(ex(model.eval()))]
        got = sess.run(None, {n: t.numpy() for n, t in zip(names, ex.tensors())})
        if len(got) != len(ref):
            raise RunError(f"ONNX parity failed: the file returns {len(got)} outputs, PyTorch {len(ref)}")
        for (path, r), o in zip(ref, got):
            if o.shape != r.shape:
                raise RunError(
                    f"ONNX parity failed: output {path or 0} has shape {o.shape} in the file, {r.shape} in "
                    f"PyTorch (inputs {ex.describe()})"
                )
            diff = max_difference(o, r)
            rel = diff / max(1.0, float(np.abs(r).max()) if r.size else 1.0)
            if rel >= worst_rel:
                worst_abs, worst_rel, where = max(worst_abs, diff), rel, path
    result = {
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "inputs": [ex.describe() for ex in feeds],
        "tolerance": tol,
    }
    if not np.isfinite(worst_rel) or worst_rel > tol:
        raise RunError(
            f"ONNX parity failed: output {where or 0} differs by {worst_abs:.3g} "
            f"(relative {worst_rel:.3g} > {tol})"
        )
    return result

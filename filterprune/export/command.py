"""`filterprune export`: a saved model -> one ONNX file that a runtime can use on its own.

The file carries, in ``metadata_props``, everything a runtime needs besides the graph (input size,
mean/std, class names) and what the pruning did (criterion, sparsity, dense and pruned MACs/params),
so ``export/run_onnx.py`` needs nothing but the file. Nothing is written unless the checker and the
onnxruntime parity check pass (and pass again after ``--simplify``).
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx

from .. import __version__, limits
from .. import serialization as ckpt
from ..bench.counting import Cost, count
from ..config import Export
from ..errors import RunError, UsageError
from ..fileio import atomic_write_bytes
from ..log import say
from ..models import ModelSpec, activation_sizes_of, build_model, factory
from .convert import (
    PARITY_BATCHES,
    PARITY_TOL,
    check,
    check_parity,
    set_metadata,
    to_proto,
)

FP16_TOL = 1e-2  # half precision keeps ~3 significant digits; judged against the fp32 PyTorch model


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def onnx_metadata(spec: ModelSpec, meta: dict, dense: Cost, pruned: Cost, batch: int | None = None) -> dict[str, str]:
    """The ``metadata_props`` of every exported file: a runtime's preprocessing, and the pruning's record.

    Values are strings (JSON for lists and numbers); ``input_shape`` has -1 for a dynamic batch.
    """
    md = {"model": factory.portable(spec.name),
          "input_shape": json.dumps([batch or -1, spec.in_channels, spec.image_size, spec.image_size]),
          "preprocessing": "resize to HxW of input_shape, scale pixels to [0, 1], (x - mean) / std, NCHW"}
    if meta.get("resize_size"):  # image folders: the evaluation transform, resize the short side + center crop
        md["preprocessing"] = ("resize the shorter side to resize_size, center-crop to HxW of input_shape, scale "
                               "pixels to [0, 1], (x - mean) / std, NCHW")
    if (digest := factory.code_digest(spec.name)) is not None:  # which code, without saying where it lives
        md["model_sha256"] = digest
    for key in ("mean", "std", "class_names", "dataset", "criterion", "sparsity", "scope", "resize_size"):
        if key in meta:
            md[key] = _text(meta[key])
    kind, sep, path = md.get("dataset", "").partition(":")
    if sep and kind in ("imagefolder", "npz"):  # the data's folder or file by its name, not where it lives here
        md["dataset"] = f"{kind}:{Path(path).name}"
    md.update({"dense_macs": str(dense.macs), "pruned_macs": str(pruned.macs),
               "dense_params": str(dense.params), "pruned_params": str(pruned.params),
               "filterprune_version": __version__})
    return md


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim's constant folding and operator fusion; metadata kept as it was."""
    import onnxslim

    md = {p.key: p.value for p in proto.metadata_props}
    try:
        slim = onnxslim.slim(proto)
    except Exception as e:
        raise RunError(f"onnxslim failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}") from None
    set_metadata(slim, md)
    check(slim)
    return slim


def export(cfg: Export) -> dict:
    """Load, export, check, prove parity (and again after simplifying), then write ``cfg.out`` atomically."""
    cfg.validate()
    doc = ckpt.read_meta(Path(cfg.source))
    spec: ModelSpec = doc["spec"]
    batches = (cfg.batch,) if cfg.batch else PARITY_BATCHES
    too_big = limits.over_budget(activation_sizes_of(spec)[0], max(batches))  # before tracing at that size
    if too_big:
        if cfg.batch:
            raise UsageError(f"--batch {cfg.batch}: {too_big}")
        raise RunError(f"{doc['path']}: {spec.name} on {spec.image_size}x{spec.image_size} inputs cannot be "
                       f"checked for parity at batch {max(batches)}: {too_big}")
    model = ckpt.load(Path(cfg.source))
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    md = onnx_metadata(spec, doc["meta"], count(build_model(spec), shape), count(model, shape), cfg.batch)
    proto = to_proto(model, shape, cfg.opset, cfg.batch, cfg.fp16, md)
    tol = FP16_TOL if cfg.fp16 else PARITY_TOL
    result = {"path": str(cfg.out), "model": spec.name, "opset": cfg.opset, "batch": cfg.batch or "dynamic",
              "fp16": cfg.fp16, "nodes": len(proto.graph.node),
              "parity": check_parity(model, proto.SerializeToString(), shape, batches, tol)}
    if cfg.simplify:
        proto = simplify(proto)
        result["simplified"] = {"nodes": len(proto.graph.node),
                                "parity": check_parity(model, proto.SerializeToString(), shape, batches, tol)}
    data = proto.SerializeToString()
    atomic_write_bytes(Path(cfg.out), data)
    result["bytes"] = len(data)
    return result


def export_command(cfg: Export) -> dict:
    """The CLI's verb: export and say what was proven."""
    r = export(cfg)
    p = r.get("simplified", r)["parity"]
    nodes = f"{r['nodes']} -> {r['simplified']['nodes']} nodes (onnxslim)" if cfg.simplify else f"{r['nodes']} nodes"
    say(f"export: {r['model']}, opset {r['opset']}, batch {r['batch']}, "
        f"{'fp16' if cfg.fp16 else 'fp32'}, {nodes}; parity at batch {p['batches']}: max|diff| "
        f"{p['max_abs_diff']:.3g} (relative {p['max_rel_diff']:.3g} <= {p['tolerance']})")
    print(r["path"])
    return r

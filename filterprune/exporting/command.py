"""`filterprune export`: a saved model -> one ONNX file that a runtime can use on its own.

The file carries, in ``metadata_props``, everything a runtime needs besides the graph (input size,
mean/std, class names) and what the pruning did (criterion, sparsity, dense and pruned MACs/params),
so ``export/run_onnx.py`` needs nothing but the file. Nothing is written unless the checker and the
onnxruntime parity check pass (and pass again after ``--simplify``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import torch.nn as nn

from .. import __version__, inputs, limits
from .. import serialization as ckpt
from ..benchmarking.counting import Cost, count
from ..config import Bench, CompressConfig, Export, all_keys
from ..data.loader import make_loader
from ..errors import RunError, UsageError
from ..fileio import atomic_write_bytes
from ..log import say
from ..models import ModelSpec, activation_sizes_of, build_model, factory
from ..reporting.schema import read_report
from ..tasks import Task, make_task
from .convert import (
    PARITY_BATCHES,
    PARITY_TOL,
    check,
    check_parity,
    set_metadata,
    to_proto,
)
from .quantize import METHOD, calibration_images, check_calib_images, int8_agreement, quantize

FP16_TOL = 1e-2  # half precision keeps ~3 significant digits; judged against the fp32 PyTorch model


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def onnx_metadata(
    spec: ModelSpec,
    meta: dict,
    dense: Cost,
    pruned: Cost,
    batch: int | None = None,
    precision: str = "fp32",
    variant: str = "pruned",
) -> dict[str, str]:
    """The ``metadata_props`` of every exported file: a runtime's preprocessing, the pruning's record, the
    file's ``variant`` (dense or pruned), ``precision`` and own ``macs``.

    Values are strings (JSON for lists and numbers); ``input_shape`` has -1 for a dynamic batch.
    """
    md = {
        "model": factory.portable(spec.name),
        "variant": variant,
        "precision": precision,
        "input_shape": json.dumps([batch or -1, spec.in_channels, spec.image_size, spec.image_size]),
        "preprocessing": "resize to HxW of input_shape, scale pixels to [0, 1], (x - mean) / std, NCHW",
    }
    if meta.get(
        "resize_size"
    ):  # image folders: the evaluation transform, resize the short side + center crop
        md["preprocessing"] = (
            "resize the shorter side to resize_size, center-crop to HxW of input_shape, scale "
            "pixels to [0, 1], (x - mean) / std, NCHW"
        )
    if (digest := factory.code_digest(spec.name)) is not None:  # which code, without saying where it lives
        md["model_sha256"] = digest
    for key in ("mean", "std", "class_names", "dataset", "criterion", "sparsity", "scope", "resize_size"):
        if key in meta:
            md[key] = _text(meta[key])
    kind, sep, path = md.get("dataset", "").partition(":")
    if sep and kind in (
        "imagefolder",
        "npz",
    ):  # the data's folder or file by its name, not where it lives here
        md["dataset"] = f"{kind}:{Path(path).name}"
    md.update(
        {
            "dense_macs": str(dense.macs),
            "pruned_macs": str(pruned.macs),
            "dense_params": str(dense.params),
            "pruned_params": str(pruned.params),
            "macs": str((pruned if variant == "pruned" else dense).macs),
            "filterprune_version": __version__,
        }
    )
    return md


def simplify(proto: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim's constant folding and operator fusion; metadata kept as it was."""
    import onnxslim

    md = {p.key: p.value for p in proto.metadata_props}
    try:
        slim = onnxslim.slim(proto)
    except Exception as e:
        raise RunError(
            f"onnxslim failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        ) from None
    set_metadata(slim, md)
    check(slim)
    return slim


def int8_path(path: Path) -> Path:
    """Where the INT8 file of ``path`` goes: ``model.onnx`` -> ``model.int8.onnx``, beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.int8.onnx" if path.suffix == ".onnx" else f"{path.name}.int8.onnx")


def _check_precision(cfg: Export, deploy: Bench) -> None:
    deploy.validate()
    if "bf16" in deploy.precision:
        raise UsageError(
            "precision bf16 is how OpenVINO computes an fp32 file, not a file of its own: time "
            "it with `filterprune bench FILE --runtime openvino --precision bf16`",
            ("precision",),
        )
    if "int8" in deploy.precision:
        if cfg.fp16:
            raise UsageError("precision int8 quantizes the fp32 model: leave out fp16", ("precision", "fp16"))
        target = int8_path(Path(cfg.out))
        if target.exists() and not cfg.overwrite:
            raise UsageError(f"{target} already exists (pass overwrite to replace it)", ("overwrite",))


def run_data(source: Path):
    """The training data of the compress run that ``source`` (a run folder or a checkpoint in one) came
    from, read as its report.json says, and the run's seed."""

    folder = source if source.is_dir() else source.parent
    if not (folder / "report.json").is_file():
        raise UsageError(
            f"precision int8 calibrates on the run's own training images, and {source} is not "
            "in a compress run folder (no report.json beside it)",
            ("precision",),
        )
    r = read_report(folder)
    keys = all_keys()
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in r["config"].items() if k in keys}
    values["dataset"] = values.get("dataset") or r["dataset"]["name"]
    run = CompressConfig.of(**values)
    data, _, _ = inputs.prepare(run)
    return data, run.train.seed


def export(cfg: Export, deploy: Bench | None = None) -> dict:
    """Load, export, check, prove parity (and again after simplifying), quantize when ``deploy.precision``
    asks for int8, then write ``cfg.out`` (and its ``.int8.onnx``) atomically."""
    deploy = deploy or Bench()
    cfg.validate()
    _check_precision(cfg, deploy)
    doc = ckpt.read_meta(Path(cfg.source))
    task = make_task(doc["meta"].get("task") or "classification")
    if "int8" in deploy.precision and task.name != "classification":
        raise UsageError(f"precision int8 is classification-only for now, not {task.name}", ("precision",))
    calib = _calibration_data(cfg, deploy)
    spec: ModelSpec = doc["spec"]
    batches = (cfg.batch,) if cfg.batch else PARITY_BATCHES
    _check_size(cfg, doc, spec, batches)
    model = _deployable(task, ckpt.load(Path(cfg.source)), spec)
    proto, result = _checked_proto(cfg, doc, spec, model, batches, task)
    data = proto.SerializeToString()
    files = {"fp32": (Path(cfg.out), data)} if "fp32" in deploy.precision else {}
    if calib is not None:
        int8, result["int8"] = _int8(proto, calib[0], calib[1], deploy.calib_images)
        result["int8"]["path"] = str(int8_path(Path(cfg.out)))
        files["int8"] = (int8_path(Path(cfg.out)), int8)
    for path, blob in files.values():
        atomic_write_bytes(path, blob)
    result["bytes"] = len(data)
    result["files"] = [str(path) for path, _ in files.values()]
    return result


def _calibration_data(cfg: Export, deploy: Bench) -> tuple | None:
    """(data, seed) of the run's training images for int8; the data first, so that a bad calib_images is
    bad input before any work. None without int8."""
    if "int8" not in deploy.precision:
        return None
    data, seed = run_data(Path(cfg.source))
    check_calib_images(data, deploy.calib_images)
    return data, seed


def _check_size(cfg: Export, doc: dict, spec: ModelSpec, batches: tuple[int, ...]) -> None:
    """Refuse, before tracing, a model whose activations at the largest parity batch are over budget."""
    too_big = limits.over_budget(activation_sizes_of(spec)[0], max(batches))
    if too_big:
        if cfg.batch:
            raise UsageError(f"--batch {cfg.batch}: {too_big}")
        raise RunError(
            f"{doc['path']}: {spec.name} on {spec.image_size}x{spec.image_size} inputs cannot be "
            f"checked for parity at batch {max(batches)}: {too_big}"
        )


def _deployable(task: Task, model: nn.Module, spec: ModelSpec) -> nn.Module:
    """What the run's task exports: the model, or a detector's network without its post-processing."""
    net = task.deployable(model)
    if net is None:
        raise UsageError(
            f"{spec.name} is a two-stage detector: it has no network without post-processing to export"
        )
    return net.eval()


def _checked_proto(
    cfg: Export, doc: dict, spec: ModelSpec, model, batches: tuple[int, ...], task: Task
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """The ONNX model with its metadata, and the record of its parity with ``model`` on inputs in the
    task's range (checked again after ``cfg.simplify``)."""
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    md = onnx_metadata(
        spec,
        doc["meta"],
        count(_deployable(task, build_model(spec), spec), shape),
        count(model, shape),
        cfg.batch,
        "fp16" if cfg.fp16 else "fp32",
    )
    proto = to_proto(model, shape, cfg.opset, cfg.batch, cfg.fp16, md, (task.output_name,))
    tol, within = (FP16_TOL if cfg.fp16 else PARITY_TOL), task.input_range
    result: dict[str, Any] = {
        "path": str(cfg.out),
        "model": spec.name,
        "opset": cfg.opset,
        "batch": cfg.batch or "dynamic",
        "fp16": cfg.fp16,
        "nodes": len(proto.graph.node),
        "parity": check_parity(model, proto.SerializeToString(), shape, batches, tol, input_range=within),
    }
    if cfg.simplify:
        proto = simplify(proto)
        result["simplified"] = {
            "nodes": len(proto.graph.node),
            "parity": check_parity(model, proto.SerializeToString(), shape, batches, tol, input_range=within),
        }
    return proto, result


def _int8(proto: onnx.ModelProto, data, seed: int, n: int) -> tuple[bytes, dict]:
    """The INT8 file of ``proto`` (calibrated on ``n`` training images drawn with ``seed``) and how closely
    it follows the fp32 file on up to 256 test images."""
    import numpy as np

    calibration = {"images": n, "seed": seed, "source": f"{data.name} training split"}
    int8 = quantize(proto, calibration_images(data, n, seed), calibration).SerializeToString()
    test = np.concatenate([x.numpy() for x, _ in make_loader(data, "test", 256, limit=256)])
    return int8, {
        "method": METHOD,
        "calibration": calibration,
        "agreement": int8_agreement(proto.SerializeToString(), int8, test),
    }


def export_command(cfg: Export, deploy: Bench | None = None) -> dict:
    """The CLI's verb: export and say what was proven."""
    r = export(cfg, deploy)
    p = r.get("simplified", r)["parity"]
    nodes = (
        f"{r['nodes']} -> {r['simplified']['nodes']} nodes (onnxslim)"
        if cfg.simplify
        else f"{r['nodes']} nodes"
    )
    say(
        f"export: {r['model']}, opset {r['opset']}, batch {r['batch']}, "
        f"{'fp16' if cfg.fp16 else 'fp32'}, {nodes}; parity at batch {p['batches']}: max|diff| "
        f"{p['max_abs_diff']:.3g} (relative {p['max_rel_diff']:.3g} <= {p['tolerance']})"
    )
    if "int8" in r:
        q, a = r["int8"], r["int8"]["agreement"]
        say(
            f"int8: {q['calibration']['images']} calibration images ({q['calibration']['source']}, seed "
            f"{q['calibration']['seed']}); on {a['images']} test images the INT8 file agrees with the fp32 "
            f"one on {100 * a['top1_agreement']:.1f}% of top-1 classes (max relative diff "
            f"{a['max_rel_diff']:.3g})"
        )
    for path in r["files"]:
        print(path)
    return r

"""ONNX export with a dynamic batch axis, the full checker, and an onnxruntime parity proof.

Parity is measured on fresh random inputs at batch 1 and 7 (7 catches a batch axis that was frozen or
broadcast wrongly) and judged relative to the output scale: max|ort - torch| / max(1, max|torch|).
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

from ..errors import RunError, UsageError
from ..example import random_inputs
from ..fileio import atomic_write_bytes

DEFAULT_OPSET = 18
DYNAMO_OPSET = 18  # the torch.export-based exporter writes opset 18 and later only
PARITY_BATCHES = (1, 7)
PARITY_TOL = 1e-4
EXPORTER = "torchscript"  # the fallback: torch.onnx.export(dynamo=False), deprecated since torch 2.9


def to_proto(
    model: nn.Module,
    input_shape: tuple[int, ...],
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    fp16: bool = False,
    metadata: dict[str, str] | None = None,
    outputs: tuple[str, ...] = ("logits",),
) -> onnx.ModelProto:
    """The checked ONNX graph of ``model`` (eval, CPU): dynamic batch axis unless ``batch`` fixes it;
    ``fp16`` exports a half-precision copy (half inputs, weights and outputs); ``outputs``: the names of
    the output tensors, in the order the model returns them (nested outputs flattened)."""
    model = model.eval().cpu()
    dtype = torch.float16 if fp16 else torch.float32
    if fp16:
        model = copy.deepcopy(model).half()
    md = dict(metadata or {})
    proto, why = _dynamo(model, input_shape, opset, batch, dtype, outputs)
    if proto is None:
        proto = _torchscript(model, input_shape, opset, batch, dtype, outputs)
        md.update(exporter=EXPORTER, exporter_fallback=why)
    else:
        md["exporter"] = "dynamo"
    set_metadata(proto, md)
    check(proto)
    return proto


def _export_args(input_shape, batch, dtype, example_batch: int, outputs=("logits",)) -> dict:
    dynamic = {name: {0: "batch"} for name in ("input", *outputs)} if batch is None else None
    return {
        "args": (torch.randn(batch or example_batch, *input_shape, dtype=dtype),),
        "input_names": ["input"],
        "output_names": list(outputs),
        "dynamic_axes": dynamic,
    }


def _dynamo(
    model, input_shape, opset, batch, dtype, outputs=("logits",)
) -> tuple[onnx.ModelProto | None, str]:
    """torch's current, torch.export-based exporter (needs onnxscript), or None and why it was not used."""
    if opset < DYNAMO_OPSET:
        return None, f"opset {opset} (the torch.export-based exporter writes {DYNAMO_OPSET}+)"
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return None, "onnxscript is not installed (the torch.export-based exporter needs it)"
    buf = io.BytesIO()
    try:  # it reports its progress on stdout: a library call stays quiet
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            a = _export_args(
                input_shape, batch, dtype, 2, outputs
            )  # batch 1 would be specialised by torch.export
            torch.onnx.export(
                model,
                a.pop("args"),
                buf,  # type: ignore[arg-type]  # torch types f as a path; its exporters take a file object too
                dynamo=True,
                opset_version=opset,
                verbose=False,
                **a,
            )
        proto = onnx.load_from_string(buf.getvalue())
        check(proto)
    except Exception as e:  # noqa: BLE001 - whatever it cannot export, the TorchScript exporter may
        first = (str(e).splitlines() or [""])[0][:160]
        return None, f"torch.export-based exporter failed: {type(e).__name__}: {first}"
    return proto, ""


def _torchscript(model, input_shape, opset, batch, dtype, outputs=("logits",)) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            a = _export_args(input_shape, batch, dtype, 1, outputs)
            torch.onnx.export(
                model,
                a.pop("args"),
                buf,  # type: ignore[arg-type]  # torch types f as a path; its exporters take a file object too
                dynamo=False,
                opset_version=opset,
                **a,
            )
        except Exception as e:
            raise RunError(
                f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            ) from None
    return onnx.load_from_string(buf.getvalue())


def exporter_of(path: Path) -> dict:
    """Which of torch's exporters wrote the file, and why the fallback was taken (from its metadata)."""
    md = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return {k: md[k] for k in ("exporter", "exporter_fallback") if k in md}


def set_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace ``metadata_props`` with ``metadata`` (string keys and values, as the format requires)."""
    del proto.metadata_props[:]
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(k), str(v)


def check(proto: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise RunError(f"ONNX checker rejected the export: {str(e).splitlines()[0][:200]}") from None


def export_onnx(
    model: nn.Module,
    path: Path,
    input_shape: tuple[int, ...],
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
    outputs: tuple[str, ...] = ("logits",),
) -> Path:
    """Export ``model`` (eval mode, CPU, dynamic batch) to ``path`` atomically; returns the path."""
    proto = to_proto(model, input_shape, opset, metadata=metadata, outputs=outputs)
    atomic_write_bytes(Path(path), proto.SerializeToString())
    return Path(path)


def check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse weights stored outside the model's folder. A tensor whose data lives in another file
    (``data_location`` EXTERNAL) must name it relatively, without ``..``, and the file must really be
    inside the folder that holds ``path`` (a symlink out counts as outside): otherwise loading the model
    would read, say, ``/etc/passwd`` as weights. Checked here, whatever the onnxruntime version does."""
    from onnx.external_data_helper import _get_all_tensors

    folder = Path(path).absolute().parent
    real_folder = folder.resolve()
    for t in _get_all_tensors(proto):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in t.external_data}.get("location", "")
        rel = Path(location)
        where = f"{path}: tensor {t.name[:80]!r} keeps its data in {location[:200]!r}"
        if not location or rel.is_absolute() or ".." in rel.parts:
            raise UsageError(f"{where}: external data must be a file inside the model's folder")
        real = (folder / rel).resolve()
        if not real.is_relative_to(real_folder):
            raise UsageError(f"{where}, which leads outside the model's folder (a symlink?); refused")
        if not real.is_file():
            raise UsageError(f"{where}, which is not a file next to the model")


def session(
    path: Path | bytes, providers: list[str] | None = None, threads: int | None = None
) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.log_severity_level = 3
    if not isinstance(path, bytes) and not Path(path).is_file():
        raise UsageError(f"ONNX file not found: {path}")
    try:
        return ort.InferenceSession(
            path if isinstance(path, bytes) else str(path),
            opts,
            providers=providers or ["CPUExecutionProvider"],
        )
    except Exception as e:  # not protobuf, truncated, unknown ops, ...: one line, never a traceback
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise RunError(
            f"{'model' if isinstance(path, bytes) else path}: not a loadable ONNX model ({msg})"
        ) from None


def max_difference(out: np.ndarray, ref: np.ndarray) -> float:
    """The largest |out - ref|, infinite where one side is NaN or infinite and the other differs: NaN
    compares with nothing, and a maximum taken in Python dropped it (a file returning NaN passed parity).
    Where both are NaN or the same infinity the file matches its model."""
    if not ref.size:
        return 0.0
    out = out.astype(np.float32)
    same = (out == ref) | (np.isnan(out) & np.isnan(ref))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(out - ref))
    return float(np.nan_to_num(diff, nan=np.inf, posinf=np.inf).max())


@torch.no_grad()
def check_parity(
    model: nn.Module,
    path: Path | bytes,
    input_shape: tuple[int, ...],
    batches: tuple[int, ...] = PARITY_BATCHES,
    tol: float = PARITY_TOL,
    seed: int = 0,
    input_range: tuple[float, float] | None = None,
) -> dict:
    """Compare onnxruntime with the fp32 PyTorch model; raises RunError if the relative difference
    exceeds ``tol``. The inputs are drawn in ``input_range`` (the task's: a detector's [0, 1] images), else
    N(0, 1) (``example.random_inputs``). A half-precision file gets the same inputs rounded to fp16."""
    model = model.eval().cpu()
    sess = session(path)
    half = sess.get_inputs()[0].type == "tensor(float16)"
    gen = torch.Generator().manual_seed(seed)
    worst_abs, worst_rel, scale = 0.0, 0.0, 0.0
    for b in batches:
        x = random_inputs((b, *input_shape), input_range, gen)
        if half:
            x = x.half().float()
        ref = model(x).numpy()
        feed = x.half().numpy() if half else x.numpy()
        out = sess.run(None, {sess.get_inputs()[0].name: feed})[0].astype(np.float32)
        if out.shape != ref.shape:
            raise RunError(f"ONNX output shape {out.shape} != PyTorch {ref.shape} at batch {b}")
        diff = max_difference(out, ref)
        scale = max(scale, float(np.abs(ref).max()))
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(1.0, float(np.abs(ref).max())))
    result = {
        "max_abs_diff": worst_abs,
        "max_rel_diff": worst_rel,
        "output_scale": scale,
        "batches": list(batches),
        "tolerance": tol,
    }
    if not np.isfinite(worst_rel) or worst_rel > tol:
        raise RunError(
            f"ONNX parity failed: max difference {worst_abs:.3g} (relative {worst_rel:.3g} > {tol})"
        )
    return result

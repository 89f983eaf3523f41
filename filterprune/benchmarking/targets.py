"""What `filterprune bench` times: the variants found in compress output folders (dense, pruned, and the
masked control when saved) and in ONNX files (the first is the baseline), each checked before anything
is allocated, under a label no other variant shares."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from .. import limits
from .. import serialization as ckpt
from ..errors import UsageError
from ..exporting.convert import check_external_data
from ..models import build_model, factory
from . import counting, onnx_cost


@dataclass
class Variant:
    """A model to time. ``source`` says how a fresh process rebuilds it for the memory probe."""

    name: str
    input_shape: tuple[int, ...]
    params: int
    macs: int
    model: nn.Module | None = None
    onnx: Path | None = None
    source: dict = field(default_factory=dict)
    largest: int = 0  # values in one sample's largest activation (0: not known, the input's size is used)
    precision: str = "fp32"  # of the file (or model): fp32, fp16 or int8

    def per_sample(self) -> int:
        return max(self.largest, math.prod(self.input_shape))


INT8_FILES = {"dense": "dense.int8.onnx", "pruned": "model.int8.onnx"}


def variants_from(targets: list[Path], precisions: tuple[str, ...] = ("fp32",)) -> list[Variant]:
    """RUN_DIRs (dense + pruned, + masked when saved; their INT8 files when ``precisions`` has int8) or ONNX
    files (the first is the baseline; each at the precision its metadata or graph says)."""
    out: list[Variant] = []
    for t in targets:
        t = Path(t)
        if not t.exists():
            raise UsageError(f"not found: {t}")
        if t.is_dir():
            found = _run_dir_variants(t)
            out += found + (_int8_variants(t, found) if "int8" in precisions else [])
        elif t.suffix == ".onnx":
            out.append(_onnx_variant(t, first=not out))
        else:
            raise UsageError(f"{t}: expected a compress output folder or an .onnx file")
    _unique_labels(out)
    return out


def _unique_labels(variants: list[Variant]) -> None:
    """Rows and timings are keyed by a variant's label, so no two may share one: with several run
    folders or ONNX files of one name the label gets the folder's name, then a #2, #3 if still taken."""
    if len({(v.name, v.precision) for v in variants}) == len(variants):
        return
    for v in variants:
        where = Path(v.source.get("path", v.name))
        home = where.absolute().parent if v.source.get("kind") == "onnx" else where
        folder = v.source.get("run") or home.name
        v.name = f"{folder}/{v.name}"
    seen: dict[tuple[str, str], int] = {}
    for v in variants:
        key = (v.name, v.precision)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            v.name = f"{v.name}#{seen[key]}"


def _run_dir_variants(run: Path) -> list[Variant]:
    meta = ckpt.read_meta(run)
    spec = meta["spec"]
    trusted = factory.grants([spec.name])  # a user factory checked here: the probe may import that code
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    pruned = ckpt.load(run)  # first: loading bounds the model's sizes before anything is built for real
    torch.manual_seed(0)
    dense = build_model(spec).eval()  # same architecture; latency does not depend on the weight values
    found = [
        ("dense", dense, run / "dense.onnx", {"kind": "dense", "path": str(run)}),
        ("pruned", pruned, run / "model.onnx", {"kind": "checkpoint", "path": str(run)}),
    ]
    if (run / "masked.json").is_file():
        found.append(
            (
                "masked",
                ckpt.load(run / "masked.json"),
                run / "masked.onnx",
                {"kind": "checkpoint", "path": str(run / "masked.json")},
            )
        )
    out = []
    for name, model, onnx_path, source in found:
        if onnx_path.is_file():  # a run folder from elsewhere: its ONNX files are checked like any other
            _check_onnx_file(onnx_path)
        c = counting.count(model, shape)
        out.append(
            Variant(
                name,
                shape,
                c.params,
                c.macs,
                model,
                onnx_path if onnx_path.is_file() else None,
                {**source, "run": run.name, "trusted": trusted},
                limits.activation_sizes(model, shape)[0],
            )
        )
    return out


def _int8_variants(run: Path, fp32: list[Variant]) -> list[Variant]:
    """The run's INT8 files (dense.int8.onnx, model.int8.onnx), costed as their fp32 models (ONNX runtimes
    only)."""
    out = []
    for v in fp32:
        if v.name not in INT8_FILES:
            continue
        path = run / INT8_FILES[v.name]
        if not path.is_file():
            raise UsageError(
                f"{run} has no {INT8_FILES[v.name]}: INT8 files are written by "
                "`filterprune compress ... --precision fp32,int8`"
            )
        _check_onnx_file(path)
        out.append(
            Variant(
                v.name,
                v.input_shape,
                v.params,
                v.macs,
                None,
                path,
                {**v.source, "kind": "onnx", "path": str(path)},
                v.largest,
                "int8",
            )
        )
    return out


def file_precision(proto: onnx.ModelProto) -> str:
    """What an ONNX file computes in: its metadata's ``precision``, else int8 when it holds quantized ops,
    fp16 when its input is half, else fp32."""
    meta = {p.key: p.value for p in proto.metadata_props}
    if meta.get("precision") in ("fp32", "fp16", "int8"):
        return meta["precision"]
    ops = {n.op_type for n in proto.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}:
        return "int8"
    first = proto.graph.input[0].type.tensor_type.elem_type if proto.graph.input else 0
    return "fp16" if first == onnx.TensorProto.FLOAT16 else "fp32"


def _check_onnx_file(path: Path) -> onnx.ModelProto:
    """The file's graph (weights not loaded), refused when unreadable or reaching outside its folder."""
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise UsageError(f"{path}: not a readable ONNX file") from None
    check_external_data(proto, path)
    return proto


def _onnx_variant(path: Path, first: bool) -> Variant:
    """An ONNX file given to ``bench``: its one image input (NCHW or NC, static apart from the batch),
    checked before anything is allocated, and its costs from its metadata or its graph."""
    proto = _check_onnx_file(path)
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]  # old files list weights as inputs too
    if not inputs:
        raise UsageError(f"{path}: the graph has no input to feed")
    dims = inputs[0].type.tensor_type.shape.dim[1:]
    shape = tuple(int(d.dim_value) for d in dims)
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"{path}: input shape {limits.show(shape)} is not static apart from the batch axis")
    if math.prod(shape) > limits.memory_budget() // (limits.LIVE_TENSORS * limits.BYTES_PER_VALUE):
        raise UsageError(
            f"{path}: declares an input of {math.prod(shape):,} values per sample "
            f"({'x'.join(map(str, shape))}): {limits.over_budget(math.prod(shape), 1)}"
        )
    meta = {p.key: p.value for p in proto.metadata_props}
    params = sum(math.prod(t.dims) for t in proto.graph.initializer)
    macs = _count(meta.get("macs")) or _count(meta.get("pruned_macs")) or onnx_cost.macs(proto)
    return Variant(
        "dense" if first else path.stem,
        shape,
        params,
        macs,
        None,
        path,
        {"kind": "onnx", "path": str(path), "named": True},
        onnx_cost.largest_activation(proto),
        file_precision(proto),
    )


def _count(text) -> int:
    """A count from metadata: a non-negative integer written as text, else 0 (not known)."""
    try:
        value = int(str(text)[:30])
    except ValueError:
        return 0
    return max(value, 0)

"""``filterprune.export`` and ``filterprune.bench`` for a module in hand (pruned in Python, finetuned by the
user's own loop):

    filterprune.export(model, "model.onnx", example_inputs, mean=MEAN, std=STD, class_names=NAMES)
    rows = filterprune.bench({"dense": dense, "pruned": model}, example_inputs)

``export`` writes a checked ONNX file whose outputs compute what the module computes (parity on
onnxruntime, raised as RunError when they differ) and whose metadata carry the preprocessing, so
``export/run_onnx.py`` runs a classifier from the file alone. ``bench`` exports each module the same way
and times the files side by side with ``filterprune bench``'s own machinery.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from . import __version__, handed
from .benchmarking import counting
from .benchmarking.command import bench as bench_files
from .benchmarking.config import BenchConfig
from .errors import RunError, UsageError
from .example import Example, as_example, leaves, random_inputs
from .exporting.convert import DEFAULT_OPSET, PARITY_TOL, check, set_metadata, to_proto
from .exporting.parity import compare
from .fileio import atomic_write_bytes


def export(
    model: nn.Module,
    path: str | Path,
    example_inputs,
    *,
    mean=None,
    std=None,
    class_names=None,
    opset: int = DEFAULT_OPSET,
    tol: float = PARITY_TOL,
) -> dict:
    """Export ``model`` (eval, CPU) to ``path`` (atomically) and prove parity; returns what was proven.

    One image batch in (any H, W): the file takes a batch of any size, checked at batch 1 and 7 on random
    inputs in the example's range (uniform for an example without negative values, else N(0, 1)); other
    inputs (several, keywords, a list of images) are exported and checked as given. Outputs are named
    ``logits`` for a classifier, else after their place in the output (``output``, ``out_0``,
    ``out_1_boxes``, ...). ``mean``/``std`` (one value per input channel) and ``class_names`` go into the
    file's metadata, as ``filterprune export`` writes them."""
    handed.check_module(model)
    ex = as_example(example_inputs)
    model = model.eval().cpu()
    out = handed.output(model, ex, "example_inputs")
    names = output_names(out)
    md = _metadata(model, ex, names, mean, std, class_names)
    x = ex.plain
    if x is not None:
        proto = to_proto(model, tuple(x.shape[1:]), opset, metadata=md, outputs=tuple(names))
        feeds = [ex_at(x, b) for b in (1, 7)]
    else:
        proto = _export_example(model, ex, opset, names, md)
        feeds = [ex]
    parity = compare(model, proto.SerializeToString(), feeds, tol)
    atomic_write_bytes(Path(path), proto.SerializeToString())
    return {"path": str(path), "outputs": names, "nodes": len(proto.graph.node), "parity": parity}


def ex_at(x: torch.Tensor, batch: int, seed: int = 0) -> Example:
    """Random inputs of ``x``'s per-sample shape at ``batch``, in the example's range
    (``example.random_inputs``): an example without negative values (images in [0, 1] or [0, 255], as
    detectors take them) gets uniform values in [0, max(1, its max)), any other N(0, 1)."""
    gen = torch.Generator().manual_seed(seed + batch)
    shape = (batch, *x.shape[1:])
    low = bool(x.numel()) and float(x.min()) >= 0
    return Example((random_inputs(shape, (0.0, max(1.0, float(x.max()))) if low else None, gen),), {})


def output_names(out) -> list[str]:
    """One name per output tensor, in the order the exporter flattens them."""
    found = leaves(out)
    if len(found) == 1:
        t = found[0][1]
        return ["logits" if t.ndim == 2 and t.is_floating_point() else "output"]
    return ["out_" + "".join(c if c.isalnum() else "_" for c in p) for p, _ in found]


def _metadata(model: nn.Module, ex: Example, names: list[str], mean, std, class_names) -> dict[str, str]:
    """What a runtime needs to feed the file and read its outputs (``export/run_onnx.py`` reads
    ``input_shape``, ``mean``, ``std`` and ``class_names``), and the module's MACs and parameters."""
    x = ex.plain
    channels = int(x.shape[1]) if x is not None else None
    md = {
        "model": type(model).__name__,
        "variant": "pruned",
        "precision": "fp32",
        "outputs": json.dumps(names),
    }
    if x is not None:
        md["input_shape"] = json.dumps([-1, *map(int, x.shape[1:])])
        md["preprocessing"] = "resize to HxW of input_shape, scale pixels to [0, 1], (x - mean) / std, NCHW"
    for key, value in (("mean", mean), ("std", std)):
        if value is None:
            continue
        values = [float(v) for v in (value.tolist() if hasattr(value, "tolist") else value)]
        if channels is None or len(values) != channels or (key == "std" and min(values) <= 0):
            raise UsageError(
                f"{key} must give one {'positive ' if key == 'std' else ''}value per input channel of "
                f"one image batch ({channels or 'no image batch'}), got {values}",
                (key,),
            )
        md[key] = json.dumps(values)
    if class_names is not None:
        md["class_names"] = json.dumps([str(c) for c in class_names])
    cost = counting.count(model, tuple(x.shape[1:]) if x is not None else ex)
    md.update(macs=str(cost.macs), params=str(cost.params), filterprune_version=__version__)
    return md


def _export_example(model: nn.Module, ex: Example, opset: int, names: list[str], md: dict) -> onnx.ModelProto:
    """Inputs other than one image batch: exported as given (fixed shapes) by the TorchScript exporter."""
    buf = io.BytesIO()
    inputs = [f"input_{i}" for i in range(len(ex.tensors()))]
    options: dict = {"dynamo": False, "opset_version": opset, "input_names": inputs, "output_names": names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(_Flat(model, ex), tuple(ex.tensors()), buf, **options)  # type: ignore[arg-type]
        except Exception as e:
            raise RunError(
                f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
            ) from None
    proto = onnx.load_from_string(buf.getvalue())
    set_metadata(proto, {**md, "exporter": "torchscript"})
    check(proto)
    return proto


class _Flat(nn.Module):
    """``model`` called with the example's tensors as flat positional inputs (its other arguments, the
    nesting of lists and dicts, fixed as in the example): what an exporter can trace."""

    def __init__(self, model: nn.Module, ex: Example):
        super().__init__()
        self.model, self.ex = model, ex

    def forward(self, *tensors):
        return self.ex.rebuild(tensors)(self.model)


def bench(
    models,
    example_inputs=None,
    out: str | Path | None = None,
    *,
    runtimes: tuple[str, ...] = ("onnxruntime",),
    batch_sizes: tuple[int, ...] = (1,),
    iters: int = 50,
    warmup: int = 10,
    threads: int | None = None,
    overwrite: bool = False,
) -> list[dict]:
    """Time modules (exported first, with parity) and/or ONNX files side by side, interleaved, as
    ``filterprune bench`` does; returns its rows (and writes its folder when ``out`` is given).

    ``models``: a dict ``{label: module or path}`` or a list of them; the first is the baseline
    (labelled ``dense``). Modules need ``example_inputs`` (one image batch)."""
    items = list(models.items()) if isinstance(models, dict) else [(None, m) for m in models]
    if not items:
        raise UsageError("bench() needs at least one model or ONNX file", ("models",))
    cfg = BenchConfig(
        runtimes=tuple(runtimes), batch_sizes=tuple(batch_sizes), iters=iters, warmup=warmup, threads=threads
    )
    with tempfile.TemporaryDirectory(prefix="filterprune-bench-") as tmp:
        targets = [_target(label, m, i, example_inputs, Path(tmp)) for i, (label, m) in enumerate(items)]
        folder = Path(out) if out is not None else Path(tmp) / "bench"
        return bench_files(targets, cfg, folder, overwrite)


def _target(label, model, i: int, example_inputs, tmp: Path) -> Path:
    """An ONNX file to time: the path given, or the module exported into ``tmp`` under its label."""
    if isinstance(model, (str, Path)):
        return Path(model)
    if not isinstance(model, nn.Module):
        raise UsageError(f"bench() takes modules or ONNX paths, got a {type(model).__name__}", ("models",))
    if example_inputs is None or as_example(example_inputs).plain is None:
        raise UsageError(
            "bench() times modules on one image batch: give example_inputs=", ("example_inputs",)
        )
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(label or f"model{i}"))
    path = tmp / f"{name}.onnx"
    export(model, path, example_inputs)
    return path

"""A module as it will be deployed, ready to time: exported to ONNX in memory, quantized to INT8 (QDQ)
when that is the precision, and run by onnxruntime or OpenVINO at that precision.

The width planners (``--round-to auto``'s latency table, ``--target-speedup``'s search) time their
candidate layers and networks here, so that a plan for ``--target-precision int8`` is measured on the
integer kernels that will run it: their fast widths are not FP32's. The INT8 file is made by the same
quantizer and settings as the deployed ``model.int8.onnx`` (``export/quantize.py``), calibrated on the
timing input itself (a kernel's speed does not depend on the scales).
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
import torch.nn as nn

from ..exporting import quantize
from .runners import ort_session, ov_runner

ONNX_RUNTIMES = ("onnxruntime", "openvino")
OPSET = 17
CALIB = 8  # timing inputs that calibrate an INT8 candidate (its scales; not its speed)
_QUANTIZED: dict[str, bytes] = {}  # fp32 file digest -> its INT8 file: the dense model is timed many times
_KEEP = 4


def fp32_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    """``module`` as an ONNX file (input ``x``, output ``y``, dynamic batch), exported from one sample."""
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            (x[:1],),
            buf,  # type: ignore[arg-type]  # torch's stubs name paths only; it writes to any binary file
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=OPSET,
        )
    return buf.getvalue()


def int8_bytes(fp32: bytes, x: torch.Tensor) -> bytes:
    """The INT8 (QDQ) file of ``fp32``, calibrated on the first rows of ``x``; the last few are kept."""
    key = hashlib.sha256(fp32).hexdigest() + str(tuple(x.shape))
    if key not in _QUANTIZED:
        calib = x[:CALIB].detach().cpu().float().numpy()
        proto = quantize.quantize(
            onnx.load_from_string(fp32), calib, {"images": len(calib), "source": "random timing input"}
        )
        while len(_QUANTIZED) >= _KEEP:
            del _QUANTIZED[next(iter(_QUANTIZED))]
        _QUANTIZED[key] = proto.SerializeToString()
    return _QUANTIZED[key]


def onnx_bytes(module: nn.Module, x: torch.Tensor, precision: str = "fp32") -> bytes:
    """The file that runs ``module`` at ``precision``: the fp32 export (computed in bf16 by OpenVINO for
    bf16), or its INT8 quantization."""
    fp32 = fp32_bytes(module, x)
    return int8_bytes(fp32, x) if precision == "int8" else fp32


def runner(
    module: nn.Module, x: torch.Tensor, runtime: str, threads: int, precision: str = "fp32"
) -> Callable[[], object]:
    """One inference of ``module`` on ``x`` by ``runtime`` (onnxruntime or openvino, CPU) at ``precision``."""
    if runtime not in ONNX_RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(ONNX_RUNTIMES)}, got {runtime!r}")
    data = onnx_bytes(module, x, precision)
    fd, name = tempfile.mkstemp(suffix=".onnx", prefix=".fp-latency-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if runtime == "openvino":  # OpenVINO runs an INT8 file's QDQ ops in int8 and is told bf16 or f32
            return ov_runner(tmp, x, threads, precision)
        sess = ort_session(tmp, "cpu", threads)
        feed = {"x": x.numpy()}
        return lambda: sess.run(None, feed)
    finally:
        tmp.unlink(missing_ok=True)

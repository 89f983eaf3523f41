"""One callable per (variant, runtime, device): what the benchmark times.

PyTorch eager runs in inference mode, channels_last for 4-D inputs (oneDNN / cuDNN's fast layout),
with cudnn.benchmark and optional fp16 autocast on CUDA. onnxruntime uses the requested execution
provider; on CUDA the input is bound once on the device (IOBinding) so host copies are not timed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import RunError, UsageError
from ..exporting.convert import PARITY_TOL

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def available_providers() -> list[str]:
    import onnxruntime as ort

    have = set(ort.get_available_providers())
    return [k for k, v in PROVIDERS.items() if v in have]


def torch_runner(
    model: nn.Module, x: torch.Tensor, device: torch.device, fp16: bool = False, compile: bool = False
) -> Callable[[], None]:
    model = model.eval().to(device)
    x = x.to(device)
    if x.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    fn = torch.compile(model) if compile else model
    autocast = torch.autocast(
        device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16, enabled=fp16
    )

    def run():
        with torch.inference_mode(), autocast:
            fn(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def ort_providers(path: Path, provider: str, fp16_trt: bool = False, int8_trt: bool = False) -> list:
    """The execution providers, with their options, that a session on ``path`` runs on. TensorRT builds an
    fp16 engine with ``fp16_trt``; with ``int8_trt`` (an INT8 QDQ file) its int8 kernels take the file's
    quantized layers, and fp16 the layers left unquantized (as ``benchmarks/gpu``'s INT8 engines do).
    Engines are cached beside the file, one folder per precision (an engine is built for one)."""
    if provider not in PROVIDERS:
        raise UsageError(f"unknown provider {provider!r}; valid: {', '.join(PROVIDERS)}")
    options: dict = {}
    if provider == "tensorrt":
        precision = "int8" if int8_trt else "fp16" if fp16_trt else "fp32"
        options = {
            "trt_fp16_enable": fp16_trt or int8_trt,
            "trt_int8_enable": int8_trt,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(Path(path).parent / ".trt_cache" / precision),
        }
    providers = [(PROVIDERS[provider], options)]
    providers += [("CUDAExecutionProvider", {})] if provider == "tensorrt" else []
    return providers + ([] if provider == "cpu" else ["CPUExecutionProvider"])


def ort_session(path: Path, provider: str, threads: int, fp16_trt: bool = False, int8_trt: bool = False):
    import onnxruntime as ort

    providers = ort_providers(path, provider, fp16_trt, int8_trt)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    # Idle worker threads of one session spin for a while after each run and steal the cores from the
    # next session's threads: with dense and pruned sessions interleaved that slowed 2-thread runs up
    # to 5x (benchmarks/speedup). No spinning: each session runs as it would alone.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=providers)


def openvino_core():
    """OpenVINO's runtime (an optional extra), or a usage error saying how to install it."""
    hide = "openvino_telemetry" not in sys.modules
    if hide:  # `import openvino` sends Google Analytics an event unless this package is absent (a stub then)
        sys.modules["openvino_telemetry"] = None
    try:
        import openvino
    except ImportError:
        raise UsageError("OpenVINO is not installed: pip install 'filterprune[openvino]'") from None
    finally:
        if hide and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]
    return openvino.Core()


# OpenVINO's CPU plugin computes in bf16 by default where the CPU has AVX-512 BF16 / AMX: the precision is
# always set, never left to the plugin. An int8 (QDQ) file runs its quantized ops in int8, the rest in f32.
OV_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def ov_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can compute in bfloat16 on this CPU."""
    return "BF16" in openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ov_compiled(path: Path, threads: int | None = None, precision: str = "fp32"):
    """The ONNX file compiled for OpenVINO's CPU plugin (latency hint) at ``precision`` (fp32, bf16, int8)."""
    cfg = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": OV_HINTS[precision],
        **({"INFERENCE_NUM_THREADS": threads} if threads else {}),
    }
    return openvino_core().compile_model(str(path), "CPU", cfg)


def ov_runner(
    path: Path, x: torch.Tensor, threads: int | None = None, precision: str = "fp32"
) -> Callable[[], None]:
    """OpenVINO on the CPU, compiled from the same ONNX file onnxruntime runs, at ``precision``."""
    req = ov_compiled(path, threads, precision).create_infer_request()
    feed = x.numpy()
    return lambda: req.infer({0: feed})


def ort_runner(
    path: Path, x: torch.Tensor, provider: str, threads: int, fp16: bool = False, int8: bool = False
) -> Callable[[], None]:
    sess = ort_session(path, provider, threads, fp16_trt=fp16, int8_trt=int8)
    name = sess.get_inputs()[0].name
    if provider == "cpu":
        feed = {name: x.numpy()}
        return lambda: sess.run(None, feed)
    import onnxruntime as ort

    binding = sess.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x.numpy(), "cuda", 0))
    binding.bind_output(sess.get_outputs()[0].name, "cuda")

    def run():
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run


def openvino_parity(
    path: Path, x: torch.Tensor, threads: int | None = None, tol: float | None = None
) -> dict:
    """OpenVINO at fp32 against onnxruntime on the same file and inputs, judged as export judges PyTorch
    against onnxruntime (max|ov - ort| / max(1, max|ort|) <= tol); a RunError when they differ."""
    import numpy as np

    tol = PARITY_TOL if tol is None else tol
    sess = ort_session(Path(path), "cpu", threads or 1)
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    out = np.asarray(ov_compiled(path, threads, "fp32")({0: x.numpy()})[0])
    diff = float(np.abs(out - ref).max()) if out.shape == ref.shape else float("inf")
    rel = diff / max(1.0, float(np.abs(ref).max()))
    if not rel <= tol:
        raise RunError(
            f"OpenVINO fp32 differs from onnxruntime on {Path(path).name}: max difference "
            f"{diff:.3g} (relative {rel:.3g} > {tol})"
        )
    return {"max_abs_diff": diff, "max_rel_diff": rel, "tolerance": tol}

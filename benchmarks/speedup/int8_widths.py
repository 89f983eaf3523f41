"""Are narrow INT8 convolutions paid for by their channels? A block of two 3x3 convs (C -> w -> C) at each
width w, timed as fp32 and as its INT8 file (filterprune's quantizer: QDQ, per-channel) on onnxruntime CPU.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/speedup/int8_widths.py [SIZE] [C]   # alone, quiet

Prints one line per width: median ms of 15 calls at batch 32 (2 threads), fp32 and int8.
"""

from __future__ import annotations

import io
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch

from filterprune.exporting import quantize

WIDTHS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 17, 20, 24, 28, 32)


def block(c: int, w: int, size: int) -> onnx.ModelProto:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(c, w, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(w, c, 3, padding=1),
        torch.nn.ReLU(),
    ).eval()
    f = io.BytesIO()
    torch.onnx.export(
        net, torch.randn(1, c, size, size), f, dynamo=False, input_names=["images"],
        dynamic_axes={"images": {0: "b"}}, opset_version=17,
    )  # fmt: skip
    return onnx.load_from_string(f.getvalue())


def median_ms(proto: onnx.ModelProto, x: np.ndarray) -> float:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        s.run(None, {"images": x})
    ts = []
    for _ in range(15):
        t0 = time.perf_counter()
        s.run(None, {"images": x})
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    c = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    torch.manual_seed(0)
    x = np.random.default_rng(0).standard_normal((32, c, size, size)).astype(np.float32)
    for w in WIDTHS:
        fp32 = block(c, w, size)
        int8 = quantize.quantize(fp32, x[:8], {"images": 8})
        print(f"w={w:3d} fp32 {median_ms(fp32, x):7.3f} ms int8 {median_ms(int8, x):7.3f} ms", flush=True)


if __name__ == "__main__":
    main()

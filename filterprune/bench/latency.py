"""Latency of several model variants (dense, pruned, ...) measured side by side.

Variants are interleaved call by call (A B A B ...) in one process with fixed threads, after warm-up,
so drift in machine load hits every variant alike; we report the median and p90 of many calls.
Inputs are random (never zeros: some kernels shortcut on zeros).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

RUNTIMES = ("torch", "onnxruntime")


def _percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _torch_runner(model: nn.Module, x: torch.Tensor, device: torch.device) -> Callable[[], None]:
    model = model.eval().to(device)
    x = x.to(device)

    def run():
        with torch.inference_mode():
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def _ort_runner(onnx_path: Path, x: torch.Tensor, threads: int) -> Callable[[], None]:
    from ..onnx_export import session

    sess = session(onnx_path, threads=threads)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def interleaved(runners: dict[str, Callable[[], None]], warmup: int, iters: int) -> dict[str, list[float]]:
    """Milliseconds per call for each runner, measured in alternation."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(iters):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def compare(models: dict[str, nn.Module], onnx_paths: dict[str, Path], input_shape: tuple[int, ...],
            batch_sizes: tuple[int, ...] = (1, 32), runtimes: tuple[str, ...] = RUNTIMES,
            device: torch.device = torch.device("cpu"), warmup: int = 3, iters: int = 20,
            threads: int | None = None) -> list[dict]:
    """One row per (runtime, device, batch, variant) with p50/p90 ms; variants timed interleaved."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    gen = torch.Generator().manual_seed(0)
    for runtime in runtimes:
        if runtime == "onnxruntime" and not onnx_paths:
            continue
        dev = device if runtime == "torch" else torch.device("cpu")
        for b in batch_sizes:
            x = torch.randn(b, *input_shape, generator=gen)
            if runtime == "torch":
                runners = {k: _torch_runner(m, x, dev) for k, m in models.items()}
            else:
                runners = {k: _ort_runner(onnx_paths[k], x, threads) for k in models if k in onnx_paths}
            times = interleaved(runners, warmup, iters)
            for variant, ts in times.items():
                rows.append({"variant": variant, "runtime": runtime, "device": dev.type, "batch_size": b,
                             "p50_ms": statistics.median(ts), "p90_ms": _percentile(ts, 90),
                             "iters": iters, "threads": threads})
    return rows


def pair_rows(rows: list[dict], base: str = "dense", other: str = "pruned",
              extra: tuple[str, ...] = ("masked",)) -> list[dict]:
    """Dense vs pruned per (runtime, device, batch): dense_ms, pruned_ms, speedup = dense / pruned; each
    ``extra`` variant timed in the same run (the masked control) adds <v>_ms, <v>_p90_ms, <v>_speedup."""
    out = []
    keyed = {(r["runtime"], r["device"], r["batch_size"], r["variant"]): r for r in rows}
    for (rt, dev, b, v), r in keyed.items():
        if v != base or (rt, dev, b, other) not in keyed:
            continue
        o = keyed[(rt, dev, b, other)]
        row = {"runtime": rt, "device": dev, "batch_size": b, "dense_ms": r["p50_ms"],
               "pruned_ms": o["p50_ms"], "dense_p90_ms": r["p90_ms"], "pruned_p90_ms": o["p90_ms"],
               "speedup": r["p50_ms"] / o["p50_ms"]}
        for x in extra:
            if (rt, dev, b, x) in keyed:
                e = keyed[(rt, dev, b, x)]
                row.update({f"{x}_ms": e["p50_ms"], f"{x}_p90_ms": e["p90_ms"], f"{x}_speedup": r["p50_ms"] / e["p50_ms"]})
        out.append(row)
    return out

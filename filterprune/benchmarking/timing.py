"""Dense vs pruned (vs masked ...) latency, throughput and memory, side by side: one row per (variant,
runtime, device, batch).

Variants are timed interleaved (A B A B ...) in one process per (runtime, device, batch) after warm-up.
Peak memory is measured apart from timing, one fresh process per (variant, runtime, batch), because a
process's peak RSS cannot be split between variants that share it. GPU peaks use the CUDA allocator's
own counters, reset before each variant. A failure such as out-of-memory at a large batch is recorded in
the row and the run goes on.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .. import limits
from ..log import say
from . import quiet
from .config import BenchConfig
from .latency import interleaved
from .runners import openvino_parity, ort_runner, ov_runner, torch_runner
from .targets import Variant

COLUMNS = [
    "variant",
    "runtime",
    "device",
    "precision",
    "batch_size",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "throughput",
    "cpu_peak_rss_mb",
    "gpu_peak_allocated_mb",
    "gpu_peak_reserved_mb",
    "params",
    "macs",
    "speedup",
    "speedup_vs_dense_fp32",
    "theoretical_speedup",
    "speedup_efficiency",
    "iters",
    "threads",
    "machine_busy",
    "error",
]


def run_bench(variants: list[Variant], cfg: BenchConfig) -> list[dict]:
    """Every (runtime, device, batch) row; each records ``machine_busy`` (why the timing may be wrong,
    '' on a quiet machine). Without ``cfg.threads`` the thread count fits the cores others leave free."""
    with quiet.Watch() as watch:
        threads = cfg.threads or quiet.free_threads(torch.get_num_threads())
        if threads < torch.get_num_threads() and not cfg.threads:
            say(
                f"notice: other processes are using the CPU; timing with {threads} thread(s) instead of "
                f"{torch.get_num_threads()} so as not to oversubscribe the free cores"
            )
        rows = _run_rows(variants, cfg, threads)
    spreads = [(r["p90_ms"] - r["p50_ms"]) / r["p50_ms"] for r in rows if r.get("p50_ms")]
    verdict = watch.verdict(spreads)
    if verdict["busy"]:
        say(f"warning: the machine was not quiet while timing ({verdict['why']}); latencies may be wrong")
    for r in rows:
        r["machine_busy"] = verdict["why"]
    if cfg.memory:
        _add_cpu_memory(rows, variants, threads)
    return [{c: r.get(c, "") for c in COLUMNS} for r in rows]


def _run_rows(variants: list[Variant], cfg: BenchConfig, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)  # one stream for every input, in the same order each run
    combos = [("torch", d) for d in cfg.torch_devices() if "torch" in cfg.runtimes]
    combos += [("onnxruntime", p) for p in cfg.ort_providers() if "onnxruntime" in cfg.runtimes]
    combos += [("openvino", "cpu")] if "openvino" in cfg.runtimes else []
    if "auto" in cfg.devices and not torch.cuda.is_available():
        say("notice: no CUDA GPU here; GPU rows skipped")
    for v in variants:  # what each batch would need is known before anything is allocated
        if not v.largest and v.model is not None:
            v.largest = limits.activation_sizes(v.model, v.input_shape)[0]
    rows: list[dict] = []
    for runtime, dev in combos:
        jobs = [(v, p) for v in variants for p in row_precisions(v, runtime, dev, cfg)]
        for b in cfg.batch_sizes if jobs else ():
            rows += _batch_rows(jobs, runtime, dev, b, cfg, threads, gen)
    _add_speedups(rows, variants)
    return rows


def row_precisions(v: Variant, runtime: str, dev: str, cfg: BenchConfig) -> list[str]:
    """The precisions ``v`` is timed at on ``runtime``/``dev``: PyTorch runs the fp32 model (fp16 autocast
    with ``--fp16`` on CUDA, bf16 on the CPU); onnxruntime a file at its own precision (TensorRT's fp16
    engine with ``--fp16``, its int8 kernels for an INT8 file); OpenVINO an fp32 file at fp32 and/or
    bf16, an int8 file at int8. A run folder's files are timed at the precisions asked; an ONNX file given
    by name always at its own."""
    asked, named = cfg.precisions, bool(v.source.get("named"))
    if runtime == "torch":
        if v.model is None or v.precision != "fp32" or "fp32" not in asked:
            return []
        return [("fp16" if dev == "cuda" else "bf16") if cfg.fp16 else "fp32"]
    if v.onnx is None:
        return []
    if runtime == "openvino" and v.precision == "fp32":
        return [p for p in ("fp32", "bf16") if p in asked] or (["fp32"] if named else [])
    if v.precision not in asked and not named:
        return []
    return ["fp16"] if dev == "tensorrt" and cfg.fp16 and v.precision == "fp32" else [v.precision]


def _batch_rows(
    jobs: list[tuple[Variant, str]],
    runtime: str,
    dev: str,
    b: int,
    cfg: BenchConfig,
    threads: int,
    gen: torch.Generator,
) -> list[dict]:
    """One (runtime, device, batch): the (variant, precision) pairs that can run are timed together; every
    row says why one could not."""
    runners, errors, inputs = {}, {}, {}
    for v, p in jobs:
        key = _label(v, p)
        why = limits.over_budget(v.per_sample(), b)  # checked before anything is allocated
        if why:
            errors[key] = why
            continue
        try:
            if v.input_shape not in inputs:  # one input per shape, random (never zeros)
                inputs[v.input_shape] = torch.randn(b, *v.input_shape, generator=gen)
            runners[key] = _runner(v, p, inputs[v.input_shape], runtime, dev, cfg, threads)
        except Exception as e:  # noqa: BLE001 - a model that cannot run here is a row, not a crash
            errors[key] = _why(e)
    times = _time_surviving(runners, errors, cfg)
    medians = ", ".join(f"{k} {statistics.median(t):.2f} ms" for k, t in times.items())
    say(f"{runtime}/{dev} batch {b}: {medians}" + (f" errors: {errors}" if errors else ""))
    rows = []
    for v, p in jobs:
        key = _label(v, p)
        row = {
            "variant": v.name,
            "runtime": runtime,
            "device": dev,
            "precision": p,
            "batch_size": b,
            "params": v.params,
            "macs": v.macs,
            "iters": cfg.iters,
            "threads": threads,
            "error": errors.get(key, ""),
        }
        if key in times and key not in errors:
            row.update(_percentiles(times[key]))
            row["throughput"] = b / (row["p50_ms"] / 1e3)
            if runtime == "torch" and dev == "cuda":
                _add_gpu_peaks(row, v, inputs[v.input_shape], cfg)
        rows.append(row)
    return rows


def _label(v: Variant, precision: str) -> str:
    return v.name if precision == "fp32" else f"{v.name} {precision}"


def _runner(
    v: Variant, precision: str, x: torch.Tensor, runtime: str, dev: str, cfg: BenchConfig, threads: int
) -> Callable[[], None]:
    if runtime == "torch":
        return torch_runner(v.model, x, torch.device(dev), cfg.fp16, cfg.compile)
    if runtime == "openvino":
        if precision == "fp32":  # what an fp32 row claims: OpenVINO computes what onnxruntime computes
            openvino_parity(v.onnx, x[:2], threads)
        return ov_runner(v.onnx, x, threads, precision)
    # the row's precision is what TensorRT builds: an fp16 engine, or int8 kernels for an INT8 file
    return ort_runner(v.onnx, x, dev, threads, fp16=precision == "fp16", int8=precision == "int8")


def _why(e: BaseException) -> str:
    """A row's ``error``: "out of memory", or the exception's type and first line, short."""
    if limits.is_oom(e):
        return "out of memory"
    first = str(e).splitlines()[0] if str(e) else ""
    return limits.printable(f"{type(e).__name__}: {first}", 160)


def _time_surviving(runners: dict, errors: dict, cfg: BenchConfig) -> dict[str, list[float]]:
    """Interleaved timing; a variant that fails (out of memory, or any other error of its own) is
    dropped, its row records why, and the others are timed again without it."""
    runners = dict(runners)
    while runners:
        try:
            return interleaved(runners, cfg.warmup, cfg.iters)
        except Exception as e:  # noqa: BLE001 - find who failed: each alone
            alone = False
            for name, run in list(runners.items()):
                try:
                    run()
                except Exception as e2:  # noqa: BLE001
                    errors[name] = _why(e2)
                    del runners[name]
                    alone = True
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not alone:  # each runs alone, not together (memory): every row says why
                errors.update({name: _why(e) for name in runners})
                break
    return {}


def _percentiles(ts: list[float]) -> dict:
    a = np.asarray(ts)
    p50 = statistics.median(ts)
    return {"p50_ms": p50, "p90_ms": float(np.percentile(a, 90)), "p99_ms": float(np.percentile(a, 99))}


def _add_gpu_peaks(row: dict, v: Variant, x: torch.Tensor, cfg: BenchConfig) -> None:
    """The CUDA allocator's peaks over one call of a fresh runner (counters reset first)."""
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        torch_runner(v.model, x, torch.device("cuda"), cfg.fp16)()
        peaks = torch.cuda.max_memory_allocated() / 2**20, torch.cuda.max_memory_reserved() / 2**20
    except Exception as e:  # noqa: BLE001
        row["error"] = f"memory probe: {type(e).__name__}"
        return
    row["gpu_peak_allocated_mb"], row["gpu_peak_reserved_mb"] = peaks


def _add_speedups(rows: list[dict], variants: list[Variant]) -> None:
    """speedup vs the baseline variant of the SAME runtime, device, precision and batch (and vs its fp32
    row: ``speedup_vs_dense_fp32``); efficiency = measured / MACs ratio."""
    base = variants[0].name
    ref = {
        (r["runtime"], r["device"], r.get("precision", "fp32"), r["batch_size"]): r
        for r in rows
        if r["variant"] == base and "p50_ms" in r
    }
    base_macs = variants[0].macs
    shape = {v.name: v.input_shape for v in variants}
    for r in rows:
        if shape.get(r["variant"], variants[0].input_shape) != variants[0].input_shape:
            continue  # another input size: no speedup against the baseline
        r["theoretical_speedup"] = base_macs / r["macs"] if r["macs"] else ""
        b = ref.get((r["runtime"], r["device"], r.get("precision", "fp32"), r["batch_size"]))
        if b is not None and "p50_ms" in r:
            r["speedup"] = b["p50_ms"] / r["p50_ms"]
            if r["theoretical_speedup"]:
                r["speedup_efficiency"] = r["speedup"] / r["theoretical_speedup"]
        f = ref.get((r["runtime"], r["device"], "fp32", r["batch_size"]))
        if f is not None and "p50_ms" in r:
            r["speedup_vs_dense_fp32"] = f["p50_ms"] / r["p50_ms"]


def dense_vs_pruned(rows: list[dict], extra: tuple[str, ...] = ("masked",)) -> list[dict]:
    """report.json's compact view: one row per (runtime, device, precision, batch) with dense and pruned
    medians and the speedup; each ``extra`` variant timed in the same run (the masked control) adds <v>_ms
    and <v>_speedup."""
    keyed = {
        (r["runtime"], r["device"], r.get("precision", "fp32"), r["batch_size"], r["variant"]): r
        for r in rows
        if r.get("p50_ms") != ""
    }
    out = []
    for (rt, dev, p, b, v), r in keyed.items():
        o = keyed.get((rt, dev, p, b, "pruned"))
        if v != "dense" or o is None:
            continue
        row = {
            "runtime": rt,
            "device": dev,
            "precision": p,
            "batch_size": b,
            "dense_ms": r["p50_ms"],
            "pruned_ms": o["p50_ms"],
            "dense_p90_ms": r["p90_ms"],
            "pruned_p90_ms": o["p90_ms"],
            "speedup": o["speedup"],
            "speedup_efficiency": o["speedup_efficiency"],
            "speedup_vs_dense_fp32": o.get("speedup_vs_dense_fp32", ""),
        }
        for x in extra:
            if (rt, dev, p, b, x) in keyed:
                e = keyed[(rt, dev, p, b, x)]
                row.update({f"{x}_ms": e["p50_ms"], f"{x}_p90_ms": e["p90_ms"], f"{x}_speedup": e["speedup"]})
        out.append(row)
    return out


def _add_cpu_memory(rows: list[dict], variants: list[Variant], threads: int) -> None:
    """Peak RSS per CPU row, each from a fresh interpreter (a plain subprocess: no multiprocessing
    machinery in the benchmarking process) running only that variant."""
    if sys.platform != "linux":
        return
    by_name = {(v.name, v.precision): v for v in variants}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")])
        ),
    }
    for r in rows:
        v = by_name.get((r["variant"], r["precision"])) or by_name[(r["variant"], "fp32")]
        rebuilt = v.source.get("kind") != "onnx" if r["runtime"] == "torch" else v.onnx is not None
        if r["device"] != "cpu" or r.get("error") or not rebuilt:  # the probe could not rebuild it
            continue
        job = {
            "source": {**v.source, "onnx": str(v.onnx) if v.onnx else None},
            "runtime": r["runtime"],
            "precision": r["precision"],
            "batch": r["batch_size"],
            "shape": list(v.input_shape),
            "threads": threads,
        }
        try:
            p = subprocess.run(
                [sys.executable, "-m", "filterprune.benchmarking.memory_probe"],
                input=json.dumps(job),
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
            res = (
                float(p.stdout.strip().splitlines()[-1])
                if p.returncode == 0
                else limits.printable((p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1], 300)
            )
        except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
            res = f"probe failed ({type(e).__name__})"
        if isinstance(res, float):
            r["cpu_peak_rss_mb"] = round(res, 1)
        else:
            say(f"memory probe {r['variant']}/{r['runtime']}/{r['batch_size']}: {res}")

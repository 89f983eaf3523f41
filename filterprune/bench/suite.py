"""`filterprune bench`: dense vs pruned (vs masked ...) latency, throughput and memory, side by side.

Variants are timed interleaved (A B A B ...) in one process per (runtime, device, batch) after warm-up.
Peak memory is measured apart from timing, one fresh process per (variant, runtime, batch), because a
process's peak RSS cannot be split between variants that share it. GPU peaks use the CUDA allocator's
own counters, reset before each variant. A failure such as out-of-memory at a large batch is recorded in
the row and the run goes on.
"""
from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .. import limits, outputs
from ..errors import UsageError
from . import counting, machine, quiet
from .latency import interleaved
from .runners import PROVIDERS, available_providers, openvino_core, ort_runner, ov_runner, torch_runner

RUNTIMES = ("torch", "onnxruntime", "openvino")
DEFAULT_RUNTIMES = ("torch", "onnxruntime")
DEVICES = ("cpu", "cuda")
COLUMNS = ["variant", "runtime", "device", "batch_size", "p50_ms", "p90_ms", "p99_ms", "throughput",
           "cpu_peak_rss_mb", "gpu_peak_allocated_mb", "gpu_peak_reserved_mb", "params", "macs", "speedup",
           "theoretical_speedup", "speedup_efficiency", "iters", "threads", "machine_busy", "error"]


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

    def per_sample(self) -> int:
        return max(self.largest, math.prod(self.input_shape))


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    devices: tuple[str, ...] = ("auto",)
    providers: tuple[str, ...] = ("auto",)
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    warmup: int = 5
    iters: int = 30
    threads: int | None = None
    fp16: bool = False
    compile: bool = False
    memory: bool = True

    def __post_init__(self):
        for flag, given in (("--runtime", self.runtimes), ("--device", self.devices), ("--provider", self.providers)):
            if not given:
                raise UsageError(f"{flag} needs at least one value")
        for r in self.runtimes:
            if r not in RUNTIMES:
                raise UsageError(f"unknown runtime {r!r}; valid: {', '.join(RUNTIMES)}")
            if r == "openvino":
                openvino_core()  # installed, or the install hint
        for d in self.devices:
            if d not in (*DEVICES, "auto"):
                raise UsageError(f"unknown device {d!r}; valid: auto, {', '.join(DEVICES)}")
            if d == "cuda" and not torch.cuda.is_available():
                raise UsageError("--device cuda requested but no CUDA GPU is available")
        for p in self.providers:
            if p not in (*PROVIDERS, "auto"):
                raise UsageError(f"unknown provider {p!r}; valid: auto, {', '.join(PROVIDERS)}")
            if p != "auto" and p not in available_providers():
                raise UsageError(f"onnxruntime provider {p!r} is not available here (have: "
                                 f"{', '.join(available_providers())}; the GPU build is `pip install filterprune[gpu]`)")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch sizes must be >= 1, got {list(self.batch_sizes)}")
        if self.iters < 1 or self.warmup < 0:
            raise UsageError("--iters must be >= 1 and --warmup >= 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")

    def torch_devices(self) -> list[str]:
        if "auto" in self.devices:
            return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        return list(self.devices)

    def ort_providers(self) -> list[str]:
        return available_providers() if "auto" in self.providers else list(self.providers)


# -------------------------------------------------------------------------------------------- variants
def variants_from(targets: list[Path]) -> list[Variant]:
    """RUN_DIRs (dense + pruned, + masked when saved) or ONNX files (the first is the baseline)."""
    from .. import serialization as ckpt

    out: list[Variant] = []
    for t in targets:
        t = Path(t)
        if not t.exists():
            raise UsageError(f"not found: {t}")
        if t.is_dir():
            out += _run_dir_variants(t, ckpt)
        elif t.suffix == ".onnx":
            out.append(_onnx_variant(t, first=not out))
        else:
            raise UsageError(f"{t}: expected a compress output folder or an .onnx file")
    _unique_labels(out)
    return out


def _unique_labels(variants: list[Variant]) -> None:
    """Rows and timings are keyed by a variant's label, so no two may share one: with several run
    folders or ONNX files of one name the label gets the folder's name, then a #2, #3 if still taken."""
    if len({v.name for v in variants}) == len(variants):
        return
    for v in variants:
        where = Path(v.source.get("path", v.name))
        folder = v.source.get("run") or (where.absolute().parent if v.source.get("kind") == "onnx" else where).name
        v.name = f"{folder}/{v.name}"
    seen: dict[str, int] = {}
    for v in variants:
        seen[v.name] = seen.get(v.name, 0) + 1
        if seen[v.name] > 1:
            v.name = f"{v.name}#{seen[v.name]}"


def _run_dir_variants(run: Path, ckpt) -> list[Variant]:
    from ..models import build_model, factory

    meta = ckpt.read_meta(run)
    spec = meta["spec"]
    trusted = factory.grants([spec.name])  # a user factory checked here: the probe may import that code
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    torch.manual_seed(0)
    dense = build_model(spec).eval()  # same architecture; latency does not depend on the weight values
    pruned = ckpt.load(run)
    found = [("dense", dense, run / "dense.onnx", {"kind": "dense", "path": str(run)}),
             ("pruned", pruned, run / "model.onnx", {"kind": "checkpoint", "path": str(run)})]
    if (run / "masked.json").is_file():
        found.append(("masked", ckpt.load(run / "masked.json"), run / "masked.onnx",
                      {"kind": "checkpoint", "path": str(run / "masked.json")}))
    out = []
    for name, model, onnx_path, source in found:
        if onnx_path.is_file():  # a run folder from elsewhere: its ONNX files are checked like any other
            _check_onnx_file(onnx_path)
        c = counting.count(model, shape)
        out.append(Variant(name, shape, c.params, c.macs, model, onnx_path if onnx_path.is_file() else None,
                           {**source, "run": run.name, "trusted": trusted},
                           limits.activation_sizes(model, shape)[0]))
    return out


def _check_onnx_file(path: Path):
    """The file's graph (weights not loaded), refused when unreadable or reaching outside its folder."""
    import onnx

    from ..export.convert import check_external_data

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
        raise UsageError(f"{path}: declares an input of {math.prod(shape):,} values per sample "
                         f"({'x'.join(map(str, shape))}): {limits.over_budget(math.prod(shape), 1)}")
    meta = {p.key: p.value for p in proto.metadata_props}
    params = sum(math.prod(t.dims) for t in proto.graph.initializer)
    macs = _int(meta.get("pruned_macs")) or _onnx_macs(proto, shape)
    return Variant("dense" if first else path.stem, shape, params, macs, None, path, {"kind": "onnx", "path": str(path)},
                   _onnx_largest(proto, shape))


def _int(text) -> int:
    """A count from metadata: a non-negative integer written as text, else 0 (not known)."""
    try:
        value = int(str(text)[:30])
    except ValueError:
        return 0
    return max(value, 0)


def _inferred(proto, shape):
    """The graph with shapes inferred for one sample of ``shape`` (weights not loaded: dims suffice)."""
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - a graph onnx cannot infer: no estimate, not an error
        return None


def _dims(proto) -> dict[str, list[int]]:
    return {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.value_info) + list(proto.graph.output)}


def _onnx_largest(proto, shape) -> int:
    inferred = _inferred(proto, shape)
    if inferred is None:
        return 0
    return max((math.prod(d[1:]) for d in _dims(inferred).values() if d), default=0)


def _onnx_macs(proto, shape) -> int:
    """MACs of conv/gemm nodes from onnx shape inference (for bare ONNX files without metadata)."""
    proto = _inferred(proto, shape)
    if proto is None:
        return 0
    dims = _dims(proto)
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    macs = 0
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.output and node.output[0] in dims and len(node.input) > 1:
            w = inits.get(node.input[1])
            if not w or len(w) < 2:
                continue
            out = math.prod(dims[node.output[0]][1:])
            per_out = math.prod(w[1:]) if node.op_type == "Conv" else w[0] if node.op_type == "MatMul" else w[1]
            macs += out * per_out
    return macs


# ------------------------------------------------------------------------------------------- measuring
OOM_MESSAGES = ("out of memory", "can't allocate memory", "failed to allocate memory", "bad_alloc",
                "cannot allocate memory")


def _is_oom(e: BaseException) -> bool:
    """Out of memory as each library says it: torch CPU "can't allocate memory", CUDA "out of memory",
    onnxruntime "Failed to allocate memory", C++ "bad_alloc", Python's MemoryError."""
    oom = (MemoryError, getattr(torch.cuda, "OutOfMemoryError", MemoryError))
    return isinstance(e, oom) or any(m in str(e).lower() for m in OOM_MESSAGES)


def _why(e: BaseException) -> str:
    """A row's ``error``: "out of memory", or the exception's type and first line, short."""
    if _is_oom(e):
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


def _gpu_peaks(runner_factory) -> tuple[float, float]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run = runner_factory()
    run()
    return torch.cuda.max_memory_allocated() / 2**20, torch.cuda.max_memory_reserved() / 2**20


def run_bench(variants: list[Variant], cfg: BenchConfig, log=print) -> list[dict]:
    """Every (runtime, device, batch) row; each records ``machine_busy`` (why the timing may be wrong,
    '' on a quiet machine). Without ``cfg.threads`` the thread count fits the cores others leave free."""
    with quiet.Watch() as watch:
        threads = cfg.threads or quiet.free_threads(torch.get_num_threads())
        if threads < torch.get_num_threads() and not cfg.threads:
            log(f"notice: other processes are using the CPU; timing with {threads} thread(s) instead of "
                f"{torch.get_num_threads()} so as not to oversubscribe the free cores")
        rows = _run_rows(variants, cfg, threads, log)
    spreads = [(r["p90_ms"] - r["p50_ms"]) / r["p50_ms"] for r in rows if r.get("p50_ms")]
    verdict = watch.verdict(spreads)
    if verdict["busy"]:
        log(f"warning: the machine was not quiet while timing ({verdict['why']}); latencies may be wrong")
    for r in rows:
        r["machine_busy"] = verdict["why"]
    if cfg.memory:
        _add_cpu_memory(rows, variants, threads, log)
    return [{c: r.get(c, "") for c in COLUMNS} for r in rows]


def _run_rows(variants: list[Variant], cfg: BenchConfig, threads: int, log) -> list[dict]:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    combos = [("torch", d) for d in cfg.torch_devices() if "torch" in cfg.runtimes]
    combos += [("onnxruntime", p) for p in cfg.ort_providers() if "onnxruntime" in cfg.runtimes]
    combos += [("openvino", "cpu")] if "openvino" in cfg.runtimes else []
    if "auto" in cfg.devices and not torch.cuda.is_available():
        log("notice: no CUDA GPU here; GPU rows skipped")
    for v in variants:  # what each batch would need is known before anything is allocated
        if not v.largest and v.model is not None:
            v.largest = limits.activation_sizes(v.model, v.input_shape)[0]
    rows: list[dict] = []
    for runtime, dev in combos:
        vs = [v for v in variants if (v.model is not None if runtime == "torch" else v.onnx is not None)]
        if not vs:
            continue
        for b in cfg.batch_sizes:
            runners, errors, inputs = {}, {}, {}
            for v in vs:
                why = limits.over_budget(v.per_sample(), b)  # checked before anything is allocated
                if why:
                    errors[v.name] = why
                    continue
                try:
                    if v.input_shape not in inputs:  # one input per shape, random (never zeros)
                        inputs[v.input_shape] = torch.randn(b, *v.input_shape, generator=gen)
                    x = inputs[v.input_shape]
                    runners[v.name] = (torch_runner(v.model, x, torch.device(dev), cfg.fp16, cfg.compile)
                                       if runtime == "torch" else ov_runner(v.onnx, x, threads)
                                       if runtime == "openvino" else ort_runner(v.onnx, x, dev, threads, cfg.fp16))
                except Exception as e:  # noqa: BLE001 - a model that cannot run here is a row, not a crash
                    errors[v.name] = _why(e)
            times = _time_surviving(runners, errors, cfg)
            log(f"{runtime}/{dev} batch {b}: " + ", ".join(
                f"{k} {statistics.median(t):.2f} ms" for k, t in times.items()) + (f" errors: {errors}" if errors else ""))
            for v in vs:
                row = {"variant": v.name, "runtime": runtime, "device": dev, "batch_size": b,
                       "params": v.params, "macs": v.macs, "iters": cfg.iters, "threads": threads,
                       "error": errors.get(v.name, "")}
                if v.name in times and v.name not in errors:
                    row.update(_percentiles(times[v.name]))
                    row["throughput"] = b / (row["p50_ms"] / 1e3)
                    if runtime == "torch" and dev == "cuda":
                        try:
                            row["gpu_peak_allocated_mb"], row["gpu_peak_reserved_mb"] = _gpu_peaks(
                                lambda v=v, x=inputs[v.input_shape]: torch_runner(v.model, x, torch.device("cuda"),
                                                                                  cfg.fp16))
                        except Exception as e:  # noqa: BLE001
                            row["error"] = f"memory probe: {type(e).__name__}"
                rows.append(row)
    _add_speedups(rows, variants)
    return rows


def _add_speedups(rows: list[dict], variants: list[Variant]) -> None:
    """speedup vs the baseline variant of the SAME runtime, device and batch; efficiency = measured / MACs ratio."""
    base = variants[0].name
    ref = {(r["runtime"], r["device"], r["batch_size"]): r for r in rows if r["variant"] == base and "p50_ms" in r}
    base_macs = variants[0].macs
    shape = {v.name: v.input_shape for v in variants}
    for r in rows:
        if shape.get(r["variant"], variants[0].input_shape) != variants[0].input_shape:
            continue  # another input size: no speedup against the baseline
        r["theoretical_speedup"] = base_macs / r["macs"] if r["macs"] else ""
        b = ref.get((r["runtime"], r["device"], r["batch_size"]))
        if b is not None and "p50_ms" in r:
            r["speedup"] = b["p50_ms"] / r["p50_ms"]
            if r["theoretical_speedup"]:
                r["speedup_efficiency"] = r["speedup"] / r["theoretical_speedup"]


def dense_vs_pruned(rows: list[dict], extra: tuple[str, ...] = ("masked",)) -> list[dict]:
    """report.json's compact view: one row per (runtime, device, batch) with dense and pruned medians and the
    speedup; each ``extra`` variant timed in the same run (the masked control) adds <v>_ms and <v>_speedup."""
    keyed = {(r["runtime"], r["device"], r["batch_size"], r["variant"]): r for r in rows if r.get("p50_ms") != ""}
    out = []
    for (rt, dev, b, v), r in keyed.items():
        o = keyed.get((rt, dev, b, "pruned"))
        if v != "dense" or o is None:
            continue
        row = {"runtime": rt, "device": dev, "batch_size": b, "dense_ms": r["p50_ms"], "pruned_ms": o["p50_ms"],
               "dense_p90_ms": r["p90_ms"], "pruned_p90_ms": o["p90_ms"], "speedup": o["speedup"],
               "speedup_efficiency": o["speedup_efficiency"]}
        for x in extra:
            if (rt, dev, b, x) in keyed:
                e = keyed[(rt, dev, b, x)]
                row.update({f"{x}_ms": e["p50_ms"], f"{x}_p90_ms": e["p90_ms"], f"{x}_speedup": e["speedup"]})
        out.append(row)
    return out


# ------------------------------------------------------------------------------------ CPU peak memory
def _add_cpu_memory(rows: list[dict], variants: list[Variant], threads: int, log) -> None:
    """Peak RSS per CPU row, each from a fresh interpreter (a plain subprocess: no multiprocessing
    machinery in the benchmarking process) running only that variant."""
    if sys.platform != "linux":
        return
    by_name = {v.name: v for v in variants}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                      os.environ.get("PYTHONPATH")]))}
    for r in rows:
        v = by_name[r["variant"]]
        if r["device"] != "cpu" or r.get("error") or v.source.get("kind") == "onnx" and r["runtime"] == "torch":
            continue
        if r["runtime"] in ("onnxruntime", "openvino") and v.onnx is None:
            continue
        job = {"source": {**v.source, "onnx": str(v.onnx) if v.onnx else None}, "runtime": r["runtime"],
               "batch": r["batch_size"], "shape": list(v.input_shape), "threads": threads}
        try:
            p = subprocess.run([sys.executable, "-m", "filterprune.bench.memory_probe"], input=json.dumps(job),
                               capture_output=True, text=True, timeout=300, env=env)
            res = float(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else \
                limits.printable((p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1], 300)
        except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
            res = f"probe failed ({type(e).__name__})"
        if isinstance(res, float):
            r["cpu_peak_rss_mb"] = round(res, 1)
        else:
            log(f"memory probe {r['variant']}/{r['runtime']}/{r['batch_size']}: {res}")


# -------------------------------------------------------------------------------------------- outputs
def write_outputs(rows: list[dict], out: Path, info: dict) -> None:
    import pandas as pd

    from ..fileio import atomic_write_bytes, atomic_write_json

    df = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_bytes(out / "bench.csv", df.to_csv(index=False).encode())
    atomic_write_json(out / "bench.json", {"machine": info, "rows": rows})
    atomic_write_bytes(out / "bench.md", markdown(df, info).encode())
    plot(df, out)


def markdown(df, info: dict) -> str:
    cols = ["variant", "runtime", "device", "batch_size", "p50_ms", "p90_ms", "p99_ms", "throughput",
            "cpu_peak_rss_mb", "gpu_peak_allocated_mb", "gpu_peak_reserved_mb", "speedup", "theoretical_speedup",
            "speedup_efficiency", "error"]
    view = df[cols].copy()
    for c in ("p50_ms", "p90_ms", "p99_ms", "throughput", "speedup", "theoretical_speedup", "speedup_efficiency"):
        view[c] = [f"{v:.2f}" if isinstance(v, float) else v for v in view[c]]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in view.itertuples(index=False))
    mach = ", ".join(f"{k} {v}" for k, v in info.items())
    busy = next((r for r in df["machine_busy"] if r), "") if "machine_busy" in df else ""
    warn = quiet.warning({"busy": True, "why": busy}) + "\n\n" if busy else ""
    return f"# Benchmark\n\n{warn}Machine: {mach}.\n\n{head}{body}"


def plot(df, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = df[df["p50_ms"] != ""].copy()
    if ok.empty:
        return
    ok["p50_ms"] = ok["p50_ms"].astype(float)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (v, rt, dev), g in ok.groupby(["variant", "runtime", "device"]):
        ax.plot(g["batch_size"], g["p50_ms"], marker="o", label=f"{v} {rt}/{dev}")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="median latency (ms)", title="Latency vs batch size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_batch.png", dpi=120)
    plt.close(fig)
    sp = ok[ok["speedup"] != ""]
    if sp.empty:
        return
    fig, ax = plt.subplots(figsize=(5, 4))
    for (rt, dev), g in sp.groupby(["runtime", "device"]):
        ax.scatter(g["theoretical_speedup"].astype(float), g["speedup"].astype(float), label=f"{rt}/{dev}")
    hi = max(sp["theoretical_speedup"].astype(float).max(), sp["speedup"].astype(float).max()) * 1.1
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="efficiency 1.0")
    ax.set(xlabel="theoretical speedup (MACs)", ylabel="measured speedup", title="Measured vs theoretical")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "speedup_measured_vs_theoretical.png", dpi=120)
    plt.close(fig)


def bench(targets: list[Path], cfg: BenchConfig, out: Path, log=print, overwrite: bool = False) -> list[dict]:
    """Time ``targets`` and write ``out`` like ``compress`` does: staged and renamed into place (complete
    or absent), an existing non-empty folder refused unless ``overwrite``."""
    out = Path(out)
    outputs.check_target(out, overwrite)
    variants = variants_from(targets)
    rows = run_bench(variants, cfg, log)
    info = machine.describe()
    outputs.write_folder(out, lambda d: write_outputs(rows, d, info), overwrite)
    return rows

"""`filterprune bench`: dense vs pruned (vs masked ...) latency, throughput and memory, side by side.

Variants are timed interleaved (A B A B ...) in one process per (runtime, device, batch) after warm-up.
Peak memory is measured apart from timing, one fresh process per (variant, runtime, batch), because a
process's peak RSS cannot be split between variants that share it. GPU peaks use the CUDA allocator's
own counters, reset before each variant. A failure such as out-of-memory at a large batch is recorded in
the row and the run goes on.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..errors import UsageError
from . import counting, machine
from .latency import interleaved
from .runners import PROVIDERS, available_providers, ort_runner, torch_runner

RUNTIMES = ("torch", "onnxruntime")
DEVICES = ("cpu", "cuda")
COLUMNS = ["variant", "runtime", "device", "batch_size", "p50_ms", "p90_ms", "p99_ms", "throughput",
           "cpu_peak_rss_mb", "gpu_peak_allocated_mb", "gpu_peak_reserved_mb", "params", "macs", "speedup",
           "theoretical_speedup", "speedup_efficiency", "iters", "threads", "error"]


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


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = RUNTIMES
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
        for r in self.runtimes:
            if r not in RUNTIMES:
                raise UsageError(f"unknown runtime {r!r}; valid: {', '.join(RUNTIMES)}")
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
    from ..prune import checkpoint as ckpt

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
    names = [v.name for v in out]
    if len(set(names)) != len(names):  # several run folders: prefix with the folder name
        for v in out:
            v.name = f"{Path(v.source['path']).name}/{v.name}"
    return out


def _run_dir_variants(run: Path, ckpt) -> list[Variant]:
    from ..models import build_model

    meta = ckpt.read_meta(run)
    spec = meta["spec"]
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
        c = counting.count(model, shape)
        out.append(Variant(name, shape, c.params, c.macs, model, onnx_path if onnx_path.is_file() else None,
                           {**source, "run": run.name}))
    return out


def _onnx_variant(path: Path, first: bool) -> Variant:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        raise UsageError(f"{path}: not a readable ONNX file") from None
    dims = proto.graph.input[0].type.tensor_type.shape.dim[1:]
    shape = tuple(int(d.dim_value) for d in dims)
    if not shape or any(s <= 0 for s in shape):
        raise UsageError(f"{path}: input shape {shape} is not static apart from the batch axis")
    meta = {p.key: p.value for p in proto.metadata_props}
    params = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    macs = int(meta.get("pruned_macs", 0)) or _onnx_macs(path, shape)
    return Variant("dense" if first else path.stem, shape, params, macs, None, path, {"kind": "onnx", "path": str(path)})


def _onnx_macs(path: Path, shape) -> int:
    """MACs of conv/gemm nodes from onnx shape inference (for bare ONNX files without metadata)."""
    import onnx
    from onnx import shape_inference

    proto = shape_inference.infer_shapes(onnx.load(str(path)))
    dims = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
            for v in list(proto.graph.value_info) + list(proto.graph.output)}
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    macs = 0
    for node in proto.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.output[0] in dims and len(node.input) > 1:
            w = inits.get(node.input[1])
            if w is None:
                continue
            out = int(np.prod(dims[node.output[0]][1:]))
            per_out = int(np.prod(w[1:])) if node.op_type == "Conv" else w[0] if node.op_type == "MatMul" else w[1]
            macs += out * per_out
    return macs


# ------------------------------------------------------------------------------------------- measuring
def _is_oom(e: BaseException) -> bool:
    return "out of memory" in str(e).lower() or isinstance(e, (MemoryError, getattr(torch.cuda, "OutOfMemoryError", MemoryError)))


def _time_surviving(runners: dict, errors: dict, cfg: BenchConfig) -> dict[str, list[float]]:
    """Interleaved timing; a variant that runs out of memory is dropped (its row records it) and the
    others are timed again without it."""
    runners = dict(runners)
    while runners:
        try:
            return interleaved(runners, cfg.warmup, cfg.iters)
        except Exception as e:  # noqa: BLE001
            if not _is_oom(e):
                raise
            for name, run in list(runners.items()):
                try:
                    run()
                except Exception as e2:  # noqa: BLE001
                    if not _is_oom(e2):
                        raise
                    errors[name] = "out of memory"
                    del runners[name]
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
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
    threads = cfg.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    combos = [("torch", d) for d in cfg.torch_devices() if "torch" in cfg.runtimes]
    combos += [("onnxruntime", p) for p in cfg.ort_providers() if "onnxruntime" in cfg.runtimes]
    if "auto" in cfg.devices and not torch.cuda.is_available():
        log("notice: no CUDA GPU here; GPU rows skipped")
    rows: list[dict] = []
    for runtime, dev in combos:
        vs = [v for v in variants if (v.model is not None if runtime == "torch" else v.onnx is not None)]
        if not vs:
            continue
        for b in cfg.batch_sizes:
            x = torch.randn(b, *vs[0].input_shape, generator=gen)
            runners, errors = {}, {}
            for v in vs:
                try:
                    runners[v.name] = (torch_runner(v.model, x, torch.device(dev), cfg.fp16, cfg.compile)
                                       if runtime == "torch" else ort_runner(v.onnx, x, dev, threads, cfg.fp16))
                except Exception as e:  # noqa: BLE001 - a model that cannot run here is a row, not a crash
                    errors[v.name] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            times = _time_surviving(runners, errors, cfg)
            log(f"{runtime}/{dev} batch {b}: " + ", ".join(
                f"{k} {statistics.median(t):.2f} ms" for k, t in times.items()) + (f" errors: {errors}" if errors else ""))
            for v in vs:
                row = {"variant": v.name, "runtime": runtime, "device": dev, "batch_size": b,
                       "params": v.params, "macs": v.macs, "iters": cfg.iters, "threads": threads,
                       "error": errors.get(v.name, "")}
                if v.name in times:
                    row.update(_percentiles(times[v.name]))
                    row["throughput"] = b / (row["p50_ms"] / 1e3)
                    if runtime == "torch" and dev == "cuda":
                        try:
                            row["gpu_peak_allocated_mb"], row["gpu_peak_reserved_mb"] = _gpu_peaks(
                                lambda v=v, x=x: torch_runner(v.model, x, torch.device("cuda"), cfg.fp16))
                        except Exception as e:  # noqa: BLE001
                            row["error"] = f"memory probe: {type(e).__name__}"
                rows.append(row)
    _add_speedups(rows, variants)
    if cfg.memory:
        _add_cpu_memory(rows, variants, threads, log)
    return [{c: r.get(c, "") for c in COLUMNS} for r in rows]


def _add_speedups(rows: list[dict], variants: list[Variant]) -> None:
    """speedup vs the baseline variant of the SAME runtime, device and batch; efficiency = measured / MACs ratio."""
    base = variants[0].name
    ref = {(r["runtime"], r["device"], r["batch_size"]): r for r in rows if r["variant"] == base and "p50_ms" in r}
    base_macs = variants[0].macs
    for r in rows:
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
def _peak_rss_mb() -> float:
    """This process's peak RSS. /proc's VmHWM, not getrusage: ru_maxrss survives exec, so a spawned
    child would report its parent's peak."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def _probe(source: dict, runtime: str, batch: int, shape, threads: int, q) -> None:
    """Child process: build one variant, run it 3 times, report peak RSS (MB) during inference: the
    resident runtime, weights and activations (imports included, loading transients excluded)."""
    try:
        torch.set_num_threads(threads)
        x = torch.randn(batch, *shape)
        if runtime == "onnxruntime":
            run = ort_runner(Path(source["onnx"]), x, "cpu", threads)
        else:
            from ..models import build_model, factory
            from ..prune import checkpoint as ckpt

            for ref in source.get("trusted", ()):  # the user's factory, trusted by the run that spawned us
                factory.trust(ref)
            if source["kind"] == "dense":
                model = build_model(ckpt.read_meta(Path(source["path"]))["spec"])
            else:
                model = ckpt.load(Path(source["path"]))
            run = torch_runner(model, x, torch.device("cpu"))
        import gc

        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: loading spikes are not inference memory
            f.write("5")
        for _ in range(3):
            run()
        q.put(_peak_rss_mb())
    except BaseException as e:  # noqa: BLE001
        q.put(f"{type(e).__name__}")


def _add_cpu_memory(rows: list[dict], variants: list[Variant], threads: int, log) -> None:
    if sys.platform != "linux":
        return
    by_name = {v.name: v for v in variants}
    ctx = mp.get_context("spawn")
    for r in rows:
        v = by_name[r["variant"]]
        if r["device"] != "cpu" or r.get("error") or v.source.get("kind") == "onnx" and r["runtime"] == "torch":
            continue
        source = {**v.source, "onnx": str(v.onnx) if v.onnx else None}
        if r["runtime"] == "onnxruntime" and v.onnx is None:
            continue
        q = ctx.Queue()
        p = ctx.Process(target=_probe, args=(source, r["runtime"], r["batch_size"], v.input_shape, threads, q))
        p.start()
        p.join(timeout=300)
        res = q.get() if p.exitcode == 0 and not q.empty() else "probe failed"
        if isinstance(res, float):
            r["cpu_peak_rss_mb"] = round(res, 1)
        else:
            log(f"memory probe {r['variant']}/{r['runtime']}/{r['batch_size']}: {res}")


# -------------------------------------------------------------------------------------------- outputs
def write_outputs(rows: list[dict], out: Path, info: dict) -> None:
    import pandas as pd

    from ..prune.checkpoint import atomic_write_bytes, atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
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
    return f"# Benchmark\n\nMachine: {mach}.\n\n{head}{body}"


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


def bench(targets: list[Path], cfg: BenchConfig, out: Path, log=print) -> list[dict]:
    variants = variants_from(targets)
    rows = run_bench(variants, cfg, log)
    write_outputs(rows, out, machine.describe())
    return rows


def load_rows(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text())["rows"]

"""Run folders -> one tidy DataFrame, one row per finished ``compress`` run.

Accepts a sweep folder (``DIR/runs/<id>/report.json``) or a plain folder of compress output folders
(``DIR/<run>/report.json``). A run is finished iff its ``report.json`` exists; hidden folders (a
compress still staging its output, ``.NAME.partial-PID``) are never read. Everything comes from
report.json, read through the schema (``schema.read_report``); a measurement that is not a number
(not measured, or a key that older reports lack) becomes NaN.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import CompressConfig
from ..errors import UsageError
from .schema import FILE as REPORT
from .schema import Machine, Report, read_report

# config fields that are not the experiment (where outputs go, how long latency is sampled) or are the
# tables' own axes: runs are never split into settings by them
NOT_SETTINGS = {
    "out",
    "overwrite",
    "data_root",
    "seed",
    "criterion",
    "sparsity",
    "compression",
    "target_macs",
    "export",
    "bench",
    "bench_batch_sizes",
    "bench_iters",
    "bench_warmup",
    "bench_memory",
}
# the x axis of the tables, in order of preference: the first of these that varies across runs
ROW_KEYS = ("sparsity", "compression", "target_macs")


@dataclass(frozen=True)
class Timing:
    """Which latency rows stand for "test time": a runtime on a device (onnxruntime's device is its
    provider) at one batch size."""

    runtime: str = "onnxruntime"
    device: str = "cpu"
    batch_size: int | None = None  # None: the largest batch the runs were timed at on this runtime

    @classmethod
    def parse(cls, runtime: str, batch_size: int | None) -> Timing:
        """``onnxruntime``, ``torch``, ``torch:cuda``, ``onnxruntime:cuda`` (the runtime[:device] of
        ``compress --target-runtime``)."""
        name, _, device = runtime.partition(":")
        if name not in ("onnxruntime", "torch") or ":" in device:
            raise UsageError(
                f"unknown runtime {runtime!r}; valid: onnxruntime, torch, torch:cuda, onnxruntime:cuda"
            )
        if batch_size is not None and batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {batch_size}")
        return cls(name, device or "cpu", batch_size)

    def label(self) -> str:
        return f"{self.runtime}/{self.device}, batch {self.batch_size}"


def find_runs(folder: Path) -> list[Path]:
    """The finished run folders under a sweep folder or a folder of compress outputs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"not a folder: {folder}")
    base = folder / "runs" if (folder / "runs").is_dir() else folder
    runs = sorted(
        p for p in base.iterdir() if not p.name.startswith(".") and p.is_dir() and (p / REPORT).is_file()
    )
    if not runs:
        raise UsageError(
            f"no finished runs in {folder}: expected {folder}/runs/*/{REPORT} (a sweep) or "
            f"{folder}/*/{REPORT} (compress output folders)"
        )
    return runs


def _num(x) -> float:
    """A number from report.json; "" (not measured), None and anything else non-numeric are NaN."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return math.nan
    return float(x)


def _latency(report: Report, timing: Timing) -> dict:
    """p50 per variant at the chosen runtime/device/batch; CPU peak RSS at that runtime on the CPU;
    GPU allocator peaks from PyTorch on CUDA (the only runtime that measures them), same batch."""
    rows = report["latency_rows"]

    def pick(runtime, device, variant, field):
        for r in rows:  # test time is the fp32 files' (rows before precisions existed are fp32)
            if (r["runtime"], r["device"], r["batch_size"], r["variant"], r.get("precision", "fp32")) == (
                runtime,
                device,
                timing.batch_size,
                variant,
                "fp32",
            ):
                return _num(r.get(field))
        return math.nan

    out = {}
    for variant, prefix in (("dense", "dense_"), ("pruned", ""), ("masked", "masked_")):
        out[f"{prefix}test_time_ms"] = pick(timing.runtime, timing.device, variant, "p50_ms")
        out[f"{prefix}cpu_peak_rss_mb"] = pick(timing.runtime, "cpu", variant, "cpu_peak_rss_mb")
        for field in ("gpu_peak_allocated_mb", "gpu_peak_reserved_mb"):
            out[f"{prefix}{field}"] = pick("torch", "cuda", variant, field)
    out["speedup"] = out["dense_test_time_ms"] / out["test_time_ms"]
    out["masked_speedup"] = out["dense_test_time_ms"] / out["masked_test_time_ms"]
    return out


def timings_present(report: Report) -> set[tuple[str, str, int]]:
    rows = [*report["latency_rows"], *report["latency"]]
    return {(r["runtime"], r["device"], r["batch_size"]) for r in rows}


def run_row(report: Report, run: Path, timing: Timing) -> dict:
    """One tidy row: what the run asked for (config), what it got (report), where it lives."""
    cfg, d, p, m = report["config"], report["dense"], report["pruned"], report["masked"]
    row: dict[str, Any] = {
        "run": run.name,
        "path": str(run),
        "model": report["model"],
        "dataset": report["dataset"]["name"],
        "criterion": report["criterion"],
        "mode": report["mode"],
        "scope": report["scope"],
        "seed": report["seed"],
        # what was asked: a --target-macs run has no sparsity (the one it found is its channel_sparsity)
        "sparsity": _num(cfg.get("sparsity")),
        "compression": _num(m["compression"] if m else cfg.get("compression")),
        "target_macs": _num(cfg.get("target_macs")),
        "channel_sparsity": _num(report["channel_sparsity"]),
        "device": report["device"],
        "dense_accuracy": _num(d["accuracy"]),
        "accuracy": _num(p["accuracy"]),
        "dense_top5": _num(d["top5"]),
        "top5": _num(p["top5"]),
        "dense_params": _num(d["params"]),
        "params": _num(p["params"]),
        "dense_macs": _num(d["macs"]),
        "macs": _num(p["macs"]),
        "dense_flops": _num(d["flops"]),
        "flops": _num(p["flops"]),
        "theoretical_speedup": _num(d["macs"]) / _num(p["macs"]) if _num(p["macs"]) else math.nan,
        "masked_accuracy": _num(m["accuracy"] if m else None),
        "masked_flop_fraction": _num(m["flop_fraction"] if m else None),
        "masked_weight_density": _num(m["weight_density"] if m else None),
    }
    row["flop_fraction"] = row["flops"] / row["dense_flops"] if row["dense_flops"] else math.nan
    row.update(_latency(report, timing))
    row["layers"] = report["layers"]
    row["machine"] = _machine(report["machine"])
    row["machine_busy"] = next(
        (r.get("machine_busy") for r in report["latency_rows"] if r.get("machine_busy")), ""
    )
    # a field an older report lacks ran with what is the default now
    row.update(
        {
            f"config.{k}": json.dumps(v) if isinstance(v, (list, dict)) else v
            for k, v in {**_config_defaults(), **cfg}.items()
        }
    )
    return row


@functools.cache
def _config_defaults() -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in CompressConfig.defaults().items()}


def _machine(m: Machine) -> str:
    gpu = f"GPU {m['gpu']}" if m["gpu"] else "no GPU"
    return f"{m['cpu']} ({m['cores']} cores), {gpu}; torch {m['torch']}, onnxruntime {m['onnxruntime']}"


def load_runs(folder: Path, timing: Timing = Timing()) -> pd.DataFrame:
    """One row per finished run, plus two derived columns: ``setting`` (the config fields that vary
    across runs, apart from criterion, seed and the row variable: runs are only ever averaged within
    one setting) and ``row_key`` (which of sparsity/compression/target_macs the tables' rows are)."""
    runs = find_runs(folder)
    reports = [(run, read_report(run / REPORT)) for run in runs]
    if timing.batch_size is None:
        batches = [
            b
            for _, r in reports
            for rt, dev, b in timings_present(r)
            if (rt, dev) == (timing.runtime, timing.device) and isinstance(b, int)
        ]
        timing = replace(timing, batch_size=max(batches, default=32))
    if not any(timing_key(timing) in timings_present(r) for _, r in reports) and any(
        timings_present(r) for _, r in reports
    ):
        have = sorted(
            {
                f"{rt}{'' if dev == 'cpu' else ':' + str(dev)} batch {b}"
                for _, r in reports
                for rt, dev, b in timings_present(r)
            },
            key=str,
        )
        raise UsageError(
            f"no run was timed on {timing.label()}; timed: {', '.join(have)} "
            "(choose with --runtime and --batch-size)"
        )
    df = pd.DataFrame([run_row(r, run, timing) for run, r in reports])
    df["row_key"] = row_key(df)
    df["setting"] = settings(df)
    df.attrs["timing"] = timing  # with the batch size resolved
    return df


def timing_key(t: Timing) -> tuple[str, str, int | None]:
    return (t.runtime, t.device, t.batch_size)


def row_key(df: pd.DataFrame) -> str:
    """The first of sparsity, compression, target_macs that varies; else the first that is set. When every
    run set --compression itself (the mask studies' knob; their sparsity is derived from it), compression
    comes first."""
    keys = list(ROW_KEYS)
    if "config.compression" in df and df["config.compression"].notna().all():
        keys.insert(0, keys.pop(keys.index("compression")))
    for key in keys:
        if df[key].nunique(dropna=True) > 1:
            return key
    return next((k for k in keys if df[k].notna().any()), "sparsity")


def settings(df: pd.DataFrame) -> pd.Series:
    """A readable label per run: model and dataset, plus every config field that differs between runs
    (epochs, scope, mode, ...), so that runs of different experiments are never averaged together."""
    row = row_key(df)
    config_cols = [
        c for c in df.columns if c.startswith("config.") and c.removeprefix("config.") not in NOT_SETTINGS
    ]
    varying = [c for c in config_cols if df[c].astype(str).nunique() > 1]
    # another row key splits settings only where it varies at one row value (a mask criterion's default
    # compression follows its sparsity: that is the same experiment, not another one)
    varying += [
        k
        for k in ROW_KEYS
        if k != row and df.groupby([row, "criterion"], dropna=False)[k].nunique(dropna=True).max() > 1
    ]

    def label(r) -> str:
        parts = [f"{r['model']} on {r['dataset']}"]
        for c in varying:
            parts.append(f"{c.removeprefix('config.')}={_fmt(r[c])}")
        return ", ".join(parts)

    return df.apply(label, axis=1)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:g}"
    return str(v)

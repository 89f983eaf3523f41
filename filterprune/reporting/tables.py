"""Tables shaped like the seed studies': rows = sparsity (or compression), columns = criterion, one table
per metric, each cell the mean ± sample std over seeds.

Runs that repeat the same configuration *and* seed are averaged first, so n counts seeds, not files.
The ``dense`` column is the unpruned model of the same runs (same seeds), for reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Metric:
    key: str  # column of the tidy frame
    title: str
    unit: str  # of the shown values (after ``scale``)
    scale: float = 1.0
    digits: int = 2
    dense: str | None = None  # the tidy column holding the dense model's value, for the reference column
    measured_at: str = ""  # "timing": the chosen runtime/device/batch; "cpu": that runtime on the CPU; "gpu"


METRICS = (
    Metric("accuracy", "Top-1 accuracy", "%", 100, 2, "dense_accuracy"),
    Metric(
        "masked_accuracy",
        "Top-1 accuracy of the masked control (dense shape, the mask's weights zeroed)",
        "%",
        100,
        2,
    ),
    Metric("test_time_ms", "Test time: median latency per batch", "ms", 1, 3, "dense_test_time_ms", "timing"),
    Metric(
        "masked_test_time_ms", "Test time of the masked control", "ms", 1, 3, "dense_test_time_ms", "timing"
    ),
    Metric(
        "speedup",
        "Measured speedup (dense / pruned latency, timed interleaved in one run)",
        "x",
        1,
        2,
        measured_at="timing",
    ),
    Metric("theoretical_speedup", "Theoretical speedup (dense MACs / pruned MACs)", "x", 1, 2),
    Metric("flop_fraction", "FLOP fraction (seed convention: pruned FLOPs / dense FLOPs)", "", 1, 4),
    Metric("masked_flop_fraction", "FLOP fraction of the masked control (seed convention)", "", 1, 4),
    Metric("params", "Parameters", "M", 1e-6, 4, "dense_params"),
    Metric("macs", "MACs", "M", 1e-6, 2, "dense_macs"),
    Metric(
        "cpu_peak_rss_mb",
        "CPU peak memory (RSS of a fresh process running the model)",
        "MB",
        1,
        1,
        "dense_cpu_peak_rss_mb",
        "cpu",
    ),
    Metric("gpu_peak_allocated_mb", "GPU peak allocated", "MB", 1, 1, "dense_gpu_peak_allocated_mb", "gpu"),
    Metric("gpu_peak_reserved_mb", "GPU peak reserved", "MB", 1, 1, "dense_gpu_peak_reserved_mb", "gpu"),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
STATS = ("mean", "std", "n")


def _levels(df: pd.DataFrame) -> list[str]:
    """Row index levels: the setting only when runs hold more than one."""
    row = df["row_key"].iloc[0]
    return (["setting"] if df["setting"].nunique() > 1 else []) + [row]


def over_seeds(values: pd.DataFrame, keys: list[str], col: str) -> pd.DataFrame:
    """mean, std (ddof 1) and n over seeds; repeats of one seed are averaged first."""
    per_seed = values.groupby([*keys, "seed"], dropna=False)[col].mean().reset_index()
    return per_seed.groupby(keys, dropna=False)[col].agg(mean="mean", std="std", n="count")


def pivot(df: pd.DataFrame, metric: Metric) -> pd.DataFrame:
    """Numeric pivot: index = [setting,] row value; columns = (dense|criterion, mean|std|n), in the
    metric's shown unit. Empty when no run measured the metric."""
    levels = _levels(df)
    have = df[df[metric.key].notna()]
    if have.empty:
        return pd.DataFrame()
    stats = over_seeds(have, [*levels, "criterion"], metric.key)
    table = stats.unstack("criterion")
    table.columns = table.columns.swaplevel(0, 1)
    criteria = sorted(have["criterion"].unique())
    parts = []
    if metric.dense:
        dense = have[have[metric.dense].notna()]
        if not dense.empty:
            d = over_seeds(dense, levels, metric.dense)
            d.columns = pd.MultiIndex.from_product([["dense"], d.columns])
            parts.append(d)
    parts.append(table[[(c, s) for c in criteria for s in STATS]])
    out = pd.concat(parts, axis=1).sort_index()
    for col in out.columns:
        if col[1] != "n":
            out[col] = out[col] * metric.scale
        else:
            out[col] = out[col].fillna(0).astype(int)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["column", "stat"])
    return out


def formatted(table: pd.DataFrame, metric: Metric) -> tuple[pd.DataFrame, int]:
    """ "mean ± std" cells; a cell whose n differs from the table's most common n says its n. Returns
    the cells and that common n."""
    if table.empty:
        return pd.DataFrame(), 0
    ns = [int(v) for v in table.xs("n", axis=1, level="stat").to_numpy().ravel() if v > 0]
    common = max(set(ns), key=ns.count) if ns else 0
    d = metric.digits
    cells = {}
    for col in table.columns.get_level_values("column").unique():
        mean, std, n = table[(col, "mean")], table[(col, "std")], table[(col, "n")]
        cells[col] = [_cell(m, s, k, d, common) for m, s, k in zip(mean, std, n)]
    return pd.DataFrame(cells, index=table.index), common


def _cell(mean: float, std: float, n: int, digits: int, common: int) -> str:
    if n == 0 or math.isnan(mean):
        return "—"
    text = f"{mean:.{digits}f}" if n == 1 or math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if n == common else f"{text} (n={n})"


def flat_csv(table: pd.DataFrame) -> pd.DataFrame:
    """The numeric pivot with one header row: ``<column> mean``, ``<column> std``, ``<column> n``."""
    out = table.copy()
    out.columns = [f"{c} {s}" for c, s in table.columns]
    return out


def markdown(cells: pd.DataFrame) -> str:
    index_names = [str(n) for n in cells.index.names]
    head = index_names + [str(c) for c in cells.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(index_names) + "---:|" * len(cells.columns)]
    for idx, row in cells.iterrows():
        keys = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join([_key(k) for k in keys] + list(row)) + " |")
    return "\n".join(lines) + "\n"


def _key(k) -> str:
    if isinstance(k, float):
        return "—" if math.isnan(k) else f"{k:g}"
    return str(k)


def title(metric: Metric, timing) -> str:
    """The table's heading, saying where a measured metric was measured (``timing``: a collect.Timing)."""
    unit = f" ({metric.unit})" if metric.unit else ""
    where = {
        "timing": f", {timing.label()}",
        "cpu": f", {timing.runtime}/cpu, batch {timing.batch_size}",
        "gpu": f", PyTorch on CUDA, batch {timing.batch_size}",
    }.get(metric.measured_at, "")
    return f"{metric.title}{unit}{where}"

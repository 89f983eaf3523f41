"""`filterprune report DIR`: the results of many compress runs (a sweep, or a folder of run folders) as
seed-study tables and figures.

collect.py reads the runs into one tidy DataFrame, tables.py pivots it (rows = sparsity or compression,
columns = criterion, mean ± std over seeds), plots.py draws the figures; this module writes them all
into one folder that appears complete or not at all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import limits, outputs
from ..errors import FilterpruneError, UsageError
from ..fileio import atomic_write_bytes, read_small_json
from ..log import say
from . import plots, tables
from .collect import REPORT, Timing, load_runs

UNMEASURED_HINT = {
    "test_time_ms": "the runs were not timed at this runtime/batch (compress without --no-bench)",
    "cpu_peak_rss_mb": "compress --bench-memory records it",
    "gpu_peak_allocated_mb": "measured only when compress runs on a CUDA GPU",
    "gpu_peak_reserved_mb": "measured only when compress runs on a CUDA GPU",
}


def _is_report(folder: Path) -> bool:
    return (folder / "report.md").is_file() and (folder / "runs.csv").is_file()


def _check_out(out: Path, source: Path, overwrite: bool) -> None:
    """A previous report is replaced; anything else that is there is refused unless ``overwrite``; the
    runs themselves never."""
    src, dst = source.resolve(), out.resolve()
    if dst == src or dst in src.parents or (dst / REPORT).exists() or (dst.parent / REPORT).exists():
        raise UsageError(f"--out {out} would replace the runs it reports on; choose another folder")
    outputs.check_target(out, overwrite=overwrite or _is_report(out))


def report(
    folder: str | Path,
    out: str | Path | None = None,
    runtime: str = "onnxruntime",
    batch_size: int | None = None,
    overwrite: bool = False,
    log=say,
) -> Path:
    """Write the tables and figures for the runs under ``folder`` into ``out`` (default ``folder/report``);
    returns where they went."""
    folder = Path(folder)
    timing = Timing.parse(runtime, batch_size)
    df = load_runs(folder, timing)
    timing = df.attrs["timing"]
    out = Path(out) if out is not None else folder / "report"
    _check_out(out, folder, overwrite)
    log(
        f"report: {len(df)} runs, {df['criterion'].nunique()} criteria, rows by {df['row_key'].iloc[0]}, "
        f"test time on {timing.label()}"
    )
    return outputs.write_folder(out, lambda d: write(df, d, timing, folder), overwrite=out.exists())


def write(df: pd.DataFrame, out: Path, timing: Timing, source: Path) -> None:
    """runs.csv, tables/<metric>.{md,csv}, plots/*.png and report.md (never a report.json: a report
    folder must not look like a run folder)."""
    (out / "tables").mkdir()
    (out / "plots").mkdir()
    atomic_write_bytes(out / "runs.csv", df.drop(columns=["layers"]).to_csv(index=False).encode())
    sections, missing = [], []
    for metric in tables.METRICS:
        table = tables.pivot(df, metric)
        if table.empty:
            if metric.key in UNMEASURED_HINT:
                missing.append(f"{tables.title(metric, timing)}: {UNMEASURED_HINT[metric.key]}")
            continue
        cells, n = tables.formatted(table, metric)
        md = tables.markdown(cells)
        atomic_write_bytes(
            out / "tables" / f"{metric.key}.md", f"# {tables.title(metric, timing)}\n\n{md}".encode()
        )
        atomic_write_bytes(out / "tables" / f"{metric.key}.csv", tables.flat_csv(table).to_csv().encode())
        sections += [
            f"### {tables.title(metric, timing)}",
            "",
            f"Mean ± std over {n} seed{'s' if n != 1 else ''} per cell unless marked (n=…); "
            f"[csv](tables/{metric.key}.csv).",
            "",
            md,
        ]
    figures = _figures(df, out / "plots", timing)
    if not any(p.name.startswith("weight_histograms") for p in figures):
        missing.append(
            "weight histograms: no run folder holds its pruned weights (pruned.json + .safetensors)"
        )
    atomic_write_bytes(
        out / "report.md", _markdown(df, source, timing, sections, missing, figures, out).encode()
    )


def _figures(df: pd.DataFrame, folder: Path, timing: Timing) -> list[Path]:
    made = []
    for label, suffix, sub in plots.by_setting(df):
        made += [
            plots.accuracy_vs(sub, "macs", folder / f"accuracy_vs_macs{suffix}.png", label),
            plots.accuracy_vs(sub, "params", folder / f"accuracy_vs_params{suffix}.png", label),
            plots.latency_vs_row(
                sub, folder / f"latency_vs_{sub['row_key'].iloc[0]}{suffix}.png", label, timing.label()
            ),
            plots.kept_channels(sub, folder / f"kept_channels{suffix}.png", label),
        ]
        made += plots.weight_histograms(sub, folder, label, suffix)
    return [p for p in made if p is not None]


def _markdown(df, source: Path, timing: Timing, sections, missing, figures, out: Path) -> str:
    row = df["row_key"].iloc[0]
    sweep = _sweep_id(source)
    lines = [
        f"# filterprune report: {source}",
        "",
        f"{len(df)} finished runs{sweep}; criteria: {', '.join(sorted(df['criterion'].unique()))}; "
        f"seeds: {', '.join(str(s) for s in sorted(df['seed'].unique()))}; rows: {row}. "
        "Cells are the mean ± sample standard deviation over seeds (runs repeating a configuration and seed "
        "are averaged first); `dense` is the unpruned model of the same runs.",
        "",
        "Settings (runs are only averaged within one):",
        "",
    ]
    lines += [f"- {s} ({n} runs)" for s, n in df["setting"].value_counts(sort=False).items()]
    lines += [
        "",
        f"Test time: {timing.label()}.",
        "",
        "Machines: " + "; ".join(sorted(set(df["machine"]))) + ".",
        "",
    ]
    busy = df[df["machine_busy"] != ""] if "machine_busy" in df else df.iloc[:0]
    if len(busy):  # a run timed on a busy machine says so here too, not only in its own report
        lines += (
            [
                f"**Warning: {len(busy)} of {len(df)} runs were timed while the machine was not quiet; their "
                "latencies may be wrong:**",
                "",
            ]
            + [f"- {r.run}: {r.machine_busy}" for r in busy.itertuples()]
            + [""]
        )
    if missing:
        lines += ["Not measured in these runs:", ""] + [f"- {m}" for m in missing] + [""]
    lines += ["## Tables", "", *sections, "## Figures", ""]
    lines += [f"![{p.stem}]({p.relative_to(out)})" for p in figures]
    return "\n".join(lines) + "\n"


def _sweep_id(source: Path) -> str:
    try:
        doc = read_small_json(source / "sweep.json", "sweep description")
        return f" of sweep {limits.printable(str(doc['sweep_id']), 40)}" + (
            f" ({limits.printable(str(doc['config_file']), 200)})" if doc.get("config_file") else ""
        )
    except (FilterpruneError, KeyError, TypeError, AttributeError):
        return ""

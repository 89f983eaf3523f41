"""What `filterprune bench` writes into its folder: bench.csv (one row per variant, runtime, device and
batch), bench.json (the rows and the machine), bench.md (the table, with a warning when the machine was
busy) and two plots."""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write_bytes, atomic_write_json
from . import quiet
from .timing import COLUMNS


def write_outputs(rows: list[dict], out: Path, info: dict) -> None:
    import pandas as pd  # heavy: loaded only when a folder is written

    df = pd.DataFrame(rows, columns=COLUMNS)
    atomic_write_bytes(out / "bench.csv", df.to_csv(index=False).encode())
    atomic_write_json(out / "bench.json", {"machine": info, "rows": rows})
    atomic_write_bytes(out / "bench.md", markdown(df, info).encode())
    plot(df, out)


MACHINE_ONLY = ("params", "macs", "iters", "threads", "machine_busy")  # in bench.csv, not in bench.md's table


def markdown(df, info: dict) -> str:
    cols = [c for c in COLUMNS if c not in MACHINE_ONLY]
    view = df[cols].copy()
    for c in (
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "throughput",
        "speedup",
        "speedup_vs_dense_fp32",
        "theoretical_speedup",
        "speedup_efficiency",
    ):
        view[c] = [f"{v:.2f}" if isinstance(v, float) else v for v in view[c]]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in view.itertuples(index=False))
    mach = ", ".join(f"{k} {v}" for k, v in info.items())
    busy = next((r for r in df["machine_busy"] if r), "") if "machine_busy" in df else ""
    warn = quiet.warning({"busy": True, "why": busy}) + "\n\n" if busy else ""
    note = (
        "Precision: what the runtime computed in (fp32; int8: the quantized file's integer kernels; "
        "bf16: OpenVINO computing the fp32 file in bfloat16; fp16: half precision). `speedup` is "
        "against dense at the same precision, `speedup_vs_dense_fp32` against dense fp32 on the same "
        "runtime.\n\n"
    )
    return f"# Benchmark\n\n{warn}Machine: {mach}.\n\n{note}{head}{body}"


def plot(df, out: Path) -> None:
    import matplotlib  # heavy: loaded only when a folder is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    ok = df[df["p50_ms"] != ""].copy()
    if ok.empty:
        return
    ok["p50_ms"] = ok["p50_ms"].astype(float)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (v, rt, dev, p), g in ok.groupby(["variant", "runtime", "device", "precision"]):
        ax.plot(g["batch_size"], g["p50_ms"], marker="o", label=f"{v} {rt}/{dev} {p}")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size",
        ylabel="median latency (ms)",
        title="Latency vs batch size",
    )
    ax.set_xticks(sorted(int(b) for b in ok["batch_size"].unique()))  # the batches timed, as plain numbers
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "latency_vs_batch.png", dpi=120)
    plt.close(fig)
    sp = ok[ok["speedup"] != ""]
    if sp.empty:
        return
    fig, ax = plt.subplots(figsize=(5, 4))
    for (rt, dev, p), g in sp.groupby(["runtime", "device", "precision"]):
        xs, ys = g["theoretical_speedup"].astype(float), g["speedup"].astype(float)
        ax.scatter(xs, ys, label=f"{rt}/{dev} {p}")
        for x, y, b, v in zip(
            xs, ys, g["batch_size"], g["variant"]
        ):  # which batch (and variant) each point is
            ax.annotate(f"{v} b{b}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=6)
    hi = max(sp["theoretical_speedup"].astype(float).max(), sp["speedup"].astype(float).max()) * 1.1
    ax.plot([0, hi], [0, hi], "k--", lw=1, label="efficiency 1.0")
    ax.set(xlabel="theoretical speedup (MACs)", ylabel="measured speedup", title="Measured vs theoretical")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "speedup_measured_vs_theoretical.png", dpi=120)
    plt.close(fig)

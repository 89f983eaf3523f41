"""The report's figures (matplotlib, Agg, PNG): accuracy vs MACs and vs params (ShrinkBench's figure 1
pair: the two cost measures can rank methods differently), latency vs sparsity, kept channels per layer
per criterion, and per-layer weight histograms per criterion (the IMP seed study's figure 1).

Points are means over seeds with ± std error bars, one series per criterion; each setting (see
collect.settings) gets its own files.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch.nn as nn

from ..models import build_model, factory
from ..serialization import load, read_meta
from .tables import over_seeds

DPI = 120
MARKERS = "osx^vD"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def by_setting(df: pd.DataFrame):
    """(setting label, file-name suffix, its runs): no suffix when there is only one setting."""
    labels = list(dict.fromkeys(df["setting"]))
    for i, label in enumerate(labels):
        suffix = (
            "" if len(labels) == 1 else f"-{i + 1}-{re.sub(r'[^A-Za-z0-9.]+', '_', label)[:60].strip('_')}"
        )
        yield label, suffix, df[df["setting"] == label]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _plt().close(fig)
    return path


def _row_label(row: str) -> str:
    return {
        "sparsity": "channel sparsity s",
        "compression": "compression c (weight density 10^-c)",
        "target_macs": "MACs target F",
    }.get(row, row)


def accuracy_vs(df: pd.DataFrame, cost: str, path: Path, title: str) -> Path | None:
    """Accuracy vs ``cost`` (macs or params), one line per criterion over the row values, dense as a star."""
    have = df[df["accuracy"].notna() & df[cost].notna()]
    if have.empty:
        return None
    plt = _plt()
    row = df["row_key"].iloc[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for crit, g in have.groupby("criterion"):
        acc = over_seeds(g, [row], "accuracy")
        x = over_seeds(g, [row], cost)["mean"]
        order = np.argsort(x.to_numpy())
        ax.errorbar(
            x.to_numpy()[order] / 1e6,
            100 * acc["mean"].to_numpy()[order],
            yerr=100 * acc["std"].fillna(0).to_numpy()[order],
            marker="o",
            capsize=3,
            label=crit,
        )
    dense = over_seeds(have.assign(k=0), ["k"], "dense_accuracy")
    ax.errorbar(
        [have[f"dense_{cost}"].mean() / 1e6],
        100 * dense["mean"],
        yerr=100 * dense["std"].fillna(0),
        marker="*",
        markersize=12,
        color="k",
        linestyle="none",
        label="dense",
    )
    ax.set(
        xlabel=f"{'MACs' if cost == 'macs' else 'parameters'} (millions)",
        ylabel="top-1 accuracy (%)",
        title=title,
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def latency_vs_row(df: pd.DataFrame, path: Path, title: str, timing_label: str) -> Path | None:
    """Median latency per criterion over the row values; the masked controls dashed; dense as a band."""
    have = df[df["test_time_ms"].notna()]
    if have.empty:
        return None
    plt = _plt()
    row = df["row_key"].iloc[0]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for crit, g in have.groupby("criterion"):
        t = over_seeds(g, [row], "test_time_ms")
        line = ax.errorbar(t.index, t["mean"], yerr=t["std"].fillna(0), marker="o", capsize=3, label=crit)
        m = g[g["masked_test_time_ms"].notna()]
        if not m.empty:
            tm = over_seeds(m, [row], "masked_test_time_ms")
            ax.errorbar(
                tm.index,
                tm["mean"],
                yerr=tm["std"].fillna(0),
                marker="x",
                capsize=3,
                linestyle="--",
                color=line[0].get_color(),
                alpha=0.7,
                label=f"{crit} masked control",
            )
    d = have["dense_test_time_ms"].dropna()
    if not d.empty:
        ax.axhspan(d.mean() - d.std(ddof=0), d.mean() + d.std(ddof=0), color="gray", alpha=0.2)
        ax.axhline(d.mean(), color="gray", linestyle=":", label="dense")
    ax.set(xlabel=_row_label(row), ylabel=f"median latency (ms), {timing_label}", title=title)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


MAX_WIDTH_IN = 40
MAX_LAYER_LABELS = 180


def kept_channels(df: pd.DataFrame, path: Path, title: str) -> Path | None:
    """One panel per row value: channels each layer keeps (mean over seeds), one line per criterion,
    the dense widths as grey bars."""
    have = df[df["layers"].map(len) > 0]
    if have.empty:
        return None
    plt = _plt()
    row = df["row_key"].iloc[0]
    values = sorted(have[row].dropna().unique()) or [math.nan]
    # the width follows the layer count up to a poster's (a report.json may list thousands of layers)
    fig, axes = plt.subplots(
        len(values),
        1,
        figsize=(min(max(6.4, 0.22 * _n_layers(have) + 2), MAX_WIDTH_IN), 2.8 * len(values)),
        squeeze=False,
    )
    for ax, v in zip(axes[:, 0], values):
        at = have[have[row] == v] if not math.isnan(v) else have
        names = list(dict.fromkeys(x["name"] for layers in at["layers"] for x in layers))
        before = {x["name"]: x["channels_before"] for layers in at["layers"] for x in layers}
        ax.bar(range(len(names)), [before[n] for n in names], color="lightgray", label="dense")
        for i, (crit, g) in enumerate(at.groupby("criterion")):  # markers and dashes keep equal lines visible
            kept = pd.DataFrame([{x["name"]: x["channels_after"] for x in layers} for layers in g["layers"]])
            ax.plot(
                range(len(names)),
                [kept[n].mean() if n in kept else np.nan for n in names],
                marker=MARKERS[i % len(MARKERS)],
                markersize=7 - i % 3 * 2,
                fillstyle="none",
                linestyle=("-", "--", ":", "-.")[i % 4],
                label=crit,
            )
        if (
            len(names) <= MAX_LAYER_LABELS
        ):  # beyond that the names overlap anyway (and cost minutes to lay out)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=90, fontsize=6)
        ax.set(ylabel="kept channels", title=f"{title}, {row} {v:g}" if not math.isnan(v) else title)
        ax.legend(fontsize=7, ncol=4)
    return _save(fig, path)


def _n_layers(df: pd.DataFrame) -> int:
    return max(len(layers) for layers in df["layers"])


def _weights(model: nn.Module) -> list[tuple[str, np.ndarray]]:
    """Conv and linear weights in module order: the layers the seed figure shows."""
    return [
        (name, m.weight.detach().cpu().numpy().ravel())
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
    ]


def _rebuildable(run: Path) -> bool:
    """A run of the user's own factory is rebuilt only by importing its code: left out (with a warning)."""
    import warnings

    name = read_meta(run)["spec"].name
    if factory.is_factory_ref(name) and not factory.is_trusted(name):
        warnings.warn(
            f"{run.name}: weight histograms left out: its model is built by user code ({name}), "
            "which a report does not import",
            stacklevel=2,
        )
        return False
    return True


def weight_histograms(
    df: pd.DataFrame, folder: Path, title: str, suffix: str = "", bins: int = 61
) -> list[Path]:
    """Per row value, one heat map per criterion: x = weight value, y = layer, colour = that layer's
    weight frequency normalised to sum 1 within the layer (the seed figure's z axis, seen from above).
    Only non-zero weights are counted (a masked model's zeros would drown the rest); each layer's label
    says how many of its dense weights remain. Weights come from the run's pruned.safetensors via
    serialization.load (no pickle); the lowest seed of each criterion stands for it. Runs without
    weights are left out; damaged weights are an error (RunError naming the file)."""
    plt = _plt()
    row = df["row_key"].iloc[0]
    written: list[Path] = []
    df = _with_weights(df)
    if df.empty:
        return written
    for v, at in df.groupby(row, dropna=False) if df[row].notna().any() else [(math.nan, df)]:
        fig, lim = _histograms_figure(plt, _panels(at), bins)
        at_v = f"{row} {v:g}" if not (isinstance(v, float) and math.isnan(v)) else ""
        fig.suptitle(
            f"Non-zero weights per layer ({title} {at_v}); % = share of the dense layer's weights left; "
            f"beyond ±{lim:.2g} in the edge bins",
            fontsize=8,
        )
        name = f"weight_histograms{suffix}-{row}{v:g}.png" if at_v else f"weight_histograms{suffix}.png"
        fig.savefig(folder / name, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        written.append(folder / name)
    return written


def _with_weights(df: pd.DataFrame) -> pd.DataFrame:
    """The runs whose weights were kept and can be rebuilt without importing user code."""
    df = df[[all((Path(p) / f).is_file() for f in ("pruned.json", "pruned.safetensors")) for p in df["path"]]]
    return df[[_rebuildable(Path(p)) for p in df["path"]]]


def _panels(at: pd.DataFrame) -> list[tuple]:
    """(criterion, seed, pruned weights by layer, dense weight count by layer) per criterion, from the
    criterion's lowest-seed run."""
    panels = []
    for crit, g in at.groupby("criterion"):
        run = g.sort_values(["seed", "run"]).iloc[0]
        weights = _weights(load(run["path"]))
        dense_sizes = dict(
            (n, w.size) for n, w in _weights(build_model(read_meta(Path(run["path"]))["spec"]))
        )
        panels.append((crit, int(run["seed"]), weights, dense_sizes))
    return panels


def _histograms_figure(plt, panels: list[tuple], bins: int) -> tuple:
    """One heat map per panel side by side, sharing the layer axis and the value range (the 99.5th
    percentile of the non-zero weights' magnitude); returns the figure and that range."""
    nonzero = np.concatenate([w[w != 0] for _, _, ws, _ in panels for _, w in ws])
    lim = float(np.quantile(np.abs(nonzero), 0.995)) if nonzero.size else 1.0
    edges = np.linspace(-lim, lim, bins + 1)
    n_layers = max(len(ws) for _, _, ws, _ in panels)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(3.2 * len(panels) + 2.5, 0.28 * n_layers + 1.8),
        squeeze=False,
        sharey=True,
    )
    for ax, (crit, seed, ws, dense_sizes) in zip(axes[0], panels):
        im = _heat_map(ax, ws, dense_sizes, lim, edges)
        ax.set(xlabel="weight value", title=f"{crit} (seed {seed})")
    axes[0, 0].set_yticks(range(n_layers))
    axes[0, 0].set_yticklabels([n for n, _ in max((p[2] for p in panels), key=len)], fontsize=6)
    fig.colorbar(im, ax=axes[0].tolist(), fraction=0.03, label="frequency within the layer")
    return fig, lim


def _heat_map(ax, ws: list, dense_sizes: dict, lim: float, edges: np.ndarray):
    """Each layer's non-zero weights binned over ``edges``, as frequencies summing to 1 per layer, with the
    share of the dense layer's weights left written at the right."""
    grid = np.zeros((len(ws), len(edges) - 1))
    for i, (name, w) in enumerate(ws):
        kept = w[w != 0]
        counts, _ = np.histogram(np.clip(kept, -lim, lim), bins=edges)
        grid[i] = counts / counts.sum() if counts.sum() else 0
        ax.text(
            0.97 * lim,
            i,
            f"{100 * kept.size / dense_sizes.get(name, w.size):.0f}%",
            ha="right",
            va="center",
            fontsize=6,
            color="white",
        )
    return ax.imshow(
        grid,
        aspect="auto",
        cmap="viridis",
        interpolation="nearest",
        extent=(-lim, lim, len(ws) - 0.5, -0.5),
    )

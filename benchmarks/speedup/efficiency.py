"""Speedup efficiency, side by side in one process (issue 8).

For each model (random init: latency does not depend on weight values) at channel sparsity 0.4,
layerwise, this builds and exports to ONNX:
  dense          the unpruned network
  tp-plain       plain torch-pruning: tp.pruner.MagnitudePruner, L1, layerwise 0.4, no rounding
  tp-round8      plain torch-pruning with round_to=8 (the folklore fix)
  tp-round16     plain torch-pruning with round_to=16
  masked         dense shape, the pruned filters zeroed (the seed studies' setting; the control)
  ours-r1        filterprune l1, layerwise 0.4, no alignment
  ours-auto      filterprune l1, layerwise 0.4, --round-to auto (hardware-aware counts, measured)
then times them interleaved (A B C ... A B C ...) in onnxruntime CPU (and PyTorch CPU) at each batch size,
and writes efficiency.csv / efficiency.md / efficiency.png into --out (default: next to this script,
one folder per thread count). Speedup efficiency = measured speedup / theoretical (MAC) speedup.

    PYTHONPATH=. python benchmarks/speedup/efficiency.py --models vgg16,resnet56 --batch-sizes 64,1 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch_pruning as tp

from filterprune.benchmarking import counting, machine
from filterprune.benchmarking.latency import interleaved
from filterprune.benchmarking.runners import ort_runner, torch_runner
from filterprune.criteria import PruneContext, make_criterion
from filterprune.exporting.convert import export_onnx
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune
from filterprune.pruning.graph import classifier_layers

SHAPE = (3, 32, 32)


def plain_tp(model: nn.Module, round_to: int | None) -> nn.Module:
    m = copy.deepcopy(model)
    pruner = tp.pruner.MagnitudePruner(
        m,
        torch.randn(1, *SHAPE),
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=0.4,
        ignored_layers=classifier_layers(m, 10),
        round_to=round_to,
        in_channel_groups={},
        out_channel_groups={},
        num_heads={},
    )
    pruner.step()
    return m


def ours(model: nn.Module, round_to, batch: int) -> nn.Module:
    m = copy.deepcopy(model)
    prune(
        m,
        make_criterion("l1"),
        PlanConfig(0.4, round_to=round_to, target_batch=batch),
        PruneContext(torch.randn(1, *SHAPE)),
        10,
    )
    return m


def masked(model: nn.Module) -> nn.Module:
    """Zero the filters ours-r1 removes, keep every shape: zeros are still computed."""
    m = copy.deepcopy(model)
    probe = copy.deepcopy(model)
    res = prune(probe, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, *SHAPE)), 10)
    mods = dict(m.named_modules())
    with torch.no_grad():
        for name, is_out, idxs in res.history:
            if is_out:
                mods[name].weight[idxs] = 0
                if mods[name].bias is not None:
                    mods[name].bias[idxs] = 0
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vgg16,resnet56")
    ap.add_argument("--batch-sizes", default="64,1")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runtimes", default="onnxruntime")
    ap.add_argument(
        "--threads",
        type=int,
        default=torch.get_num_threads(),
        help="intra-op threads for onnxruntime and torch (and the --round-to auto latency table)",
    )
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = Path(a.out or Path(__file__).parent / f"threads{a.threads}")
    work = out / "onnx"
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for name in a.models.split(","):
        for batch in [int(b) for b in a.batch_sizes.split(",")]:
            torch.manual_seed(0)
            dense = build_model(ModelSpec(name)).eval()
            variants = {
                "dense": dense,
                "tp-plain": plain_tp(dense, None),
                "tp-round8": plain_tp(dense, 8),
                "tp-round16": plain_tp(dense, 16),
                "masked": masked(dense),
                "ours-r1": ours(dense, 1, batch),
                "ours-auto": ours(dense, "auto", batch),
            }
            macs = {k: counting.count(v, SHAPE).macs for k, v in variants.items()}
            macs["masked"] = macs["dense"]  # zeros are computed: no theoretical gain
            paths = {k: export_onnx(v, work / f"{name}-{k}.onnx", SHAPE) for k, v in variants.items()}
            x = torch.randn(batch, *SHAPE)
            for runtime in a.runtimes.split(","):
                runners = (
                    {k: ort_runner(p, x, "cpu", a.threads) for k, p in paths.items()}
                    if runtime == "onnxruntime"
                    else {k: torch_runner(v, x, torch.device("cpu")) for k, v in variants.items()}
                )
                times = interleaved(runners, a.warmup, a.iters)
                d = statistics.median(times["dense"])
                for k, ts in times.items():
                    med = statistics.median(ts)
                    theo = macs["dense"] / macs[k]
                    rows.append(
                        {
                            "model": name,
                            "runtime": runtime,
                            "threads": a.threads,
                            "batch_size": batch,
                            "variant": k,
                            "p10_ms": round(float(np.percentile(ts, 10)), 3),
                            "p50_ms": round(med, 3),
                            "p90_ms": round(float(np.percentile(ts, 90)), 3),
                            "macs": macs[k],
                            "theoretical_speedup": round(theo, 3),
                            "speedup": round(d / med, 3),
                            "speedup_efficiency": round(d / med / theo, 3),
                            "channel_sparsity": round(1 - sum(_widths(variants[k])) / sum(_widths(dense)), 3),
                            "widths": ",".join(
                                str(m.out_channels) for m in variants[k].modules() if isinstance(m, nn.Conv2d)
                            ),
                        }
                    )
                    print(
                        f"{name} {runtime} b{batch} {k:10s} {med:9.2f} ms speedup {d / med:5.2f} "
                        f"theo {theo:5.2f} eff {d / med / theo:5.2f}",
                        file=sys.stderr,
                    )
    df = pd.DataFrame(rows)
    df.to_csv(out / "efficiency.csv", index=False)
    info = machine.describe()
    load = f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    cols = [
        "model",
        "runtime",
        "batch_size",
        "variant",
        "channel_sparsity",
        "p10_ms",
        "p50_ms",
        "p90_ms",
        "theoretical_speedup",
        "speedup",
        "speedup_efficiency",
    ]
    md = [
        "# Speedup efficiency, interleaved in one process",
        "",
        f"Machine: {', '.join(f'{k} {v}' for k, v in info.items())}; {a.threads} thread(s); {load}.",
        f"{a.iters} interleaved calls per variant after {a.warmup} warm-up rounds; speedup from medians.",
        "",
        "    " + " ".join(sys.argv),
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (out / "efficiency.md").write_text("\n".join(md) + "\n")
    _plot(df, out / "efficiency.png")


def _widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def _plot(df: pd.DataFrame, path: Path) -> None:
    """Measured vs theoretical speedup, one panel per (model, batch); the dashed line is efficiency 0.9."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(df.groupby(["model", "runtime", "batch_size"], sort=False).groups)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4), squeeze=False)
    for ax, (model, runtime, batch) in zip(axes[0], keys):
        part = df[(df.model == model) & (df.runtime == runtime) & (df.batch_size == batch)]
        top = max(part.theoretical_speedup.max(), part.speedup.max()) * 1.1
        ax.plot([1, top], [1, top], "k-", lw=0.8, label="efficiency 1")
        ax.plot([1, top], [0.9, 0.9 * top], "k--", lw=0.8, label="efficiency 0.9")
        for _, r in part.iterrows():
            ax.scatter(r.theoretical_speedup, r.speedup, s=30)
            ax.annotate(
                r.variant,
                (r.theoretical_speedup, r.speedup),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set(
            title=f"{model} {runtime} batch {batch}",
            xlabel="theoretical (MAC) speedup",
            ylabel="measured speedup",
        )
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()

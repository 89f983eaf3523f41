"""Speedup efficiency, side by side in one process (issue 8).

For each model (random init: latency does not depend on weight values) at channel sparsity 0.4,
layerwise, this builds and exports to ONNX:
  dense          the unpruned network
  tp-plain       plain torch-pruning: tp.pruner.MagnitudePruner, L1, layerwise 0.4, no rounding
  tp-round16     plain torch-pruning with round_to=16 (the folklore fix)
  masked         dense shape, the pruned filters zeroed (the seed studies' setting; the control)
  ours-r1        filterprune l1, layerwise 0.4, no alignment
  ours-auto      filterprune l1, layerwise 0.4, --round-to auto (hardware-aware counts, measured)
then times them interleaved (A B C ... A B C ...) in onnxruntime CPU (and PyTorch CPU) at each batch size,
and writes efficiency.csv / efficiency.md next to this script (or --out).

    PYTHONPATH=. python benchmarks/speedup/efficiency.py --models vgg16,resnet56 --batch-sizes 64,1 --iters 30
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch_pruning as tp

from filterprune.bench import counting, machine
from filterprune.bench.latency import interleaved
from filterprune.bench.runners import ort_runner, torch_runner
from filterprune.criteria import PruneContext, make_criterion
from filterprune.models import ModelSpec, build_model
from filterprune.onnx_export import export_onnx
from filterprune.prune import PlanConfig, prune
from filterprune.prune.graph import classifier_layers

SHAPE = (3, 32, 32)


def plain_tp(model: nn.Module, round_to: int | None) -> nn.Module:
    m = copy.deepcopy(model)
    pruner = tp.pruner.MagnitudePruner(m, torch.randn(1, *SHAPE), importance=tp.importance.MagnitudeImportance(p=1),
                                       pruning_ratio=0.4, ignored_layers=classifier_layers(m, 10), round_to=round_to,
                                       in_channel_groups={}, out_channel_groups={}, num_heads={})
    pruner.step()
    return m


def ours(model: nn.Module, round_to, batch: int) -> nn.Module:
    m = copy.deepcopy(model)
    prune(m, make_criterion("l1"), PlanConfig(0.4, round_to=round_to, target_batch=batch),
          PruneContext(torch.randn(1, *SHAPE)), 10)
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
    ap.add_argument("--runtimes", default="onnxruntime,torch")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    a = ap.parse_args()
    out = Path(a.out)
    work = out / "onnx"
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for name in a.models.split(","):
        for batch in [int(b) for b in a.batch_sizes.split(",")]:
            torch.manual_seed(0)
            dense = build_model(ModelSpec(name)).eval()
            variants = {"dense": dense, "tp-plain": plain_tp(dense, None), "tp-round16": plain_tp(dense, 16),
                        "masked": masked(dense), "ours-r1": ours(dense, 1, batch),
                        "ours-auto": ours(dense, "auto", batch)}
            macs = {k: counting.count(v, SHAPE).macs for k, v in variants.items()}
            macs["masked"] = macs["dense"]  # zeros are computed: no theoretical gain
            paths = {k: export_onnx(v, work / f"{name}-{k}.onnx", SHAPE) for k, v in variants.items()}
            x = torch.randn(batch, *SHAPE)
            for runtime in a.runtimes.split(","):
                runners = ({k: ort_runner(p, x, "cpu", torch.get_num_threads()) for k, p in paths.items()}
                           if runtime == "onnxruntime" else
                           {k: torch_runner(v, x, torch.device("cpu")) for k, v in variants.items()})
                times = interleaved(runners, a.warmup, a.iters)
                d = statistics.median(times["dense"])
                for k, ts in times.items():
                    med = statistics.median(ts)
                    theo = macs["dense"] / macs[k]
                    rows.append({"model": name, "runtime": runtime, "batch_size": batch, "variant": k,
                                 "p50_ms": round(med, 3), "p90_ms": round(float(np.percentile(ts, 90)), 3),
                                 "macs": macs[k], "theoretical_speedup": round(theo, 3),
                                 "speedup": round(d / med, 3), "speedup_efficiency": round(d / med / theo, 3),
                                 "widths": ",".join(str(m.out_channels) for m in variants[k].modules()
                                                    if isinstance(m, nn.Conv2d))})
                    print(f"{name} {runtime} b{batch} {k:10s} {med:9.2f} ms speedup {d / med:5.2f} "
                          f"theo {theo:5.2f} eff {d / med / theo:5.2f}", file=sys.stderr)
    df = pd.DataFrame(rows)
    df.to_csv(out / "efficiency.csv", index=False)
    info = machine.describe()
    cols = ["model", "runtime", "batch_size", "variant", "p50_ms", "p90_ms", "theoretical_speedup", "speedup",
            "speedup_efficiency"]
    md = ["# Speedup efficiency, interleaved in one process", "",
          f"Machine: {', '.join(f'{k} {v}' for k, v in info.items())}. Iterations: {a.iters} per variant.", "",
          "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    md += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    (out / "efficiency.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()

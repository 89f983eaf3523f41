"""How efficient can a pruned ResNet-56 be on this runtime? An exhaustive search over stage widths.

ResNet-56's three stages have one residual width each (coupled by the adds) and 9 inner widths each.
Here every stage's residual and inner widths range over multiples of 8 (no ±10% band), each conv's
latency comes from the same measured table as ``--round-to auto`` (onnxruntime CPU, this machine, the
given batch and threads), and every combination that removes at least the MACs of the plain layerwise
plan at sparsity 0.4 is scored by modelled speedup efficiency (measured-MAC rate / dense rate). The
best of them bounds what any channel-count choice of that shape can reach.

    PYTHONPATH=. python benchmarks/speedup/ceiling.py --batch 64 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import math

import torch
import torch.nn as nn

from filterprune.models import ModelSpec, build_model
from filterprune.pruning.align import LatencyTable, conv_sites
from filterprune.pruning.graph import build_graph, channel_groups, classifier_layers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--top", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = build_model(ModelSpec("resnet56")).eval()
    x = torch.randn(1, 3, 32, 32)
    groups = channel_groups(build_graph(model, x), classifier_layers(model, 10))
    sites, table = conv_sites(model, x, groups), LatencyTable("onnxruntime", a.batch)
    channels = [cg.channels for cg in groups]
    stage = {16: 0, 32: 1, 64: 2}
    # a residual group reaches several convs' outputs (the stage's convs and shortcut); an inner one, one
    kind = [
        (
            stage[c],
            "residual"
            if sum(
                d.handler.__name__ == "prune_out_channels" and isinstance(d.target.module, nn.Conv2d)
                for d, _ in cg.group
            )
            > 1
            else "inner",
        )
        for cg, c in zip(groups, channels)
    ]

    def cost(keep):
        return (sum(s.macs(keep) for s in sites) * a.batch, sum(table(s, *s.widths(keep)) for s in sites))

    dense_macs, dense_ms = cost(channels)
    plain_macs, plain_ms = cost([math.ceil(0.6 * c) for c in channels])
    widths = {0: range(8, 17, 8), 1: range(8, 33, 8), 2: range(8, 65, 8)}
    axes = [(s, k) for s in range(3) for k in ("residual", "inner")]
    scored = []
    for combo in itertools.product(*[widths[s] for s, _ in axes]):
        w = dict(zip(axes, combo))
        macs, ms = cost([w[k] for k in kind])
        if macs <= plain_macs:
            scored.append(((dense_ms / ms) / (dense_macs / macs), dense_ms / ms, dense_macs / macs, combo))
    table.save()
    scored.sort(reverse=True)
    print(
        f"resnet56, onnxruntime CPU, batch {a.batch}, {a.threads} thread(s); modelled from {len(table.table)} "
        f"measured conv latencies"
    )
    print(
        f"plain layerwise 0.4: theoretical {dense_macs / plain_macs:.2f}x, modelled speedup "
        f"{dense_ms / plain_ms:.2f}x, efficiency {(dense_ms / plain_ms) / (dense_macs / plain_macs):.2f}"
    )
    print(f"{len(scored)} stage-width choices remove at least as many MACs; the best by efficiency:")
    print("  (stage1 residual, inner, stage2 residual, inner, stage3 residual, inner)")
    for eff, speed, theo, combo in scored[: a.top]:
        print(f"  {combo}: efficiency {eff:.3f}, modelled speedup {speed:.2f}x, theoretical {theo:.2f}x")


if __name__ == "__main__":
    main()

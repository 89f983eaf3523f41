"""Table-1-style comparison of the structured criteria (Lajić et al. 2025, Table 1) on real CIFAR-10 data.

One model, sparsity 0.4, every criterion pruned from the *same* cached baseline per seed and finetuned
with the same budget; accuracy as mean ± std over seeds, params and MACs. Regenerates
benchmarks/criteria_table/{table.md,table.csv,config.json} with one command (resumable: finished runs
under --runs are reused):

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/criteria_table.py --data-root ../shared/data

(one thread: on a shared 2-core machine, two OpenMP threads per process stall each other.)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

from filterprune.api import CompressConfig, compress
from filterprune.benchmarking import machine
from filterprune.reporting.schema import read_report

HERE = Path(__file__).resolve().parent / "criteria_table"
CRITERIA = ["greedy", "l1", "magnitude", "slimming", "random"]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--sparsity", type=float, default=0.4)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=10, help="baseline epochs")
    p.add_argument("--finetune-epochs", type=int, default=3)
    p.add_argument("--criteria", default=",".join(CRITERIA))
    p.add_argument("--runs", default="/tmp/filterprune-criteria-table", help="run folders (not committed)")
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    criteria = a.criteria.split(",")
    runs, out = Path(a.runs), Path(a.out)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = []
    for seed in seeds:
        for crit in criteria:
            run = runs / f"{a.model}-{crit}-s{a.sparsity:g}-seed{seed}"
            if not (run / "report.json").is_file():
                compress(
                    CompressConfig.of(
                        model=a.model,
                        criterion=crit,
                        sparsity=a.sparsity,
                        round_to=1,  # exact counts: the committed numbers predate the default of 16
                        dataset="cifar10",
                        data_root=a.data_root,
                        epochs=a.epochs,
                        finetune_epochs=a.finetune_epochs,
                        seed=seed,
                        out=str(run),
                        overwrite=True,
                        export=False,
                        bench=False,
                    )
                )
            r = read_report(run)
            rows.append(
                {
                    "criterion": crit,
                    "seed": seed,
                    "scope": r["scope"],
                    "dense_top1": r["dense"]["accuracy"],
                    "pruned_top1": r["pruned"]["accuracy"],
                    "params": r["pruned"]["params"],
                    "macs": r["pruned"]["macs"],
                    "dense_params": r["dense"]["params"],
                    "dense_macs": r["dense"]["macs"],
                    "channel_sparsity": r["channel_sparsity"],
                    "prune_s": r["timings_s"]["prune"],
                }
            )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def pm(values):
        m = statistics.mean(values)
        s = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{100 * m:.2f} ± {100 * s:.2f}"

    dense = [r for r in rows if r["criterion"] == criteria[0]]
    lines = [
        f"| method | scope | top-1 % (mean ± std, {len(seeds)} seeds) | params | MACs | prune s (median) |",
        "|---|---|---:|---:|---:|---:|",
        f"| pre-pruning | — | {pm([r['dense_top1'] for r in dense])} | {dense[0]['dense_params']:,} | "
        f"{dense[0]['dense_macs']:,} | — |",
    ]
    for crit in criteria:
        rs = [r for r in rows if r["criterion"] == crit]
        params = [r["params"] for r in rs]  # in seed order; one value when every seed agrees
        macs = [r["macs"] for r in rs]
        params, macs = (
            (params[:1] if len(set(params)) == 1 else params),
            (macs[:1] if len(set(macs)) == 1 else macs),
        )
        lines.append(
            f"| {crit} | {rs[0]['scope']} | {pm([r['pruned_top1'] for r in rs])} | "
            f"{' / '.join(f'{v:,}' for v in params)} | {' / '.join(f'{v:,}' for v in macs)} | "
            f"{statistics.median(r['prune_s'] for r in rs):.2f} |"
        )
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{threads}PYTHONPATH=$PWD python benchmarks/criteria_table.py " + " ".join(
        argv or sys.argv[1:]
    )
    config = {
        "command": command,
        "model": a.model,
        "dataset": "cifar10 (cifar10_mini.npz, 5,085/1,017 real images)",
        "sparsity": a.sparsity,
        "seeds": seeds,
        "baseline_epochs": a.epochs,
        "finetune_epochs": a.finetune_epochs,
        "criteria": criteria,
        "export": False,
        "bench": False,
        "wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": machine.describe(),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    md = [
        f"# {a.model} on real CIFAR-10 (subset), channel sparsity {a.sparsity:g}",
        "",
        f"Command: `{command}`",
        "",
        f"Same cached baseline per seed ({a.epochs} epochs, SGD cosine), then prune and {a.finetune_epochs} "
        "finetune epochs at a tenth of the baseline lr, for every criterion. Params/MACs of the pruned "
        "network (one value per seed, in seed order, where they differ). Slimming uses its paper's global threshold "
        "without sparsity training (as the seed study does); the others are layerwise.",
        "",
        *lines,
        "",
        f"Machine: {config['machine']['cpu']} ({config['machine']['cores']} cores), torch "
        f"{config['machine']['torch']}; load average before/after {load_before[0]:.2f}/{config['loadavg_after'][0]:.2f}; "
        f"wall {config['wall_s']:.0f} s (runs reused from earlier invocations are not re-timed).",
        "",
    ]
    (out / "table.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

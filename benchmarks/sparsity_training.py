"""Network-slimming sparsity training (Liu et al. 2017) on real CIFAR-10: the share of BatchNorm scales
with |gamma| < 1e-2 as the L1 strength lambda grows, with test accuracy alongside. Regenerates
benchmarks/sparsity_training/{results.csv,results.md,gamma_share.png,config.json} with one command:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/sparsity_training.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import torch

from filterprune.benchmarking import machine
from filterprune.criteria.structured.slimming import small_gamma_share
from filterprune.data import load_dataset
from filterprune.models import ModelSpec, build_model
from filterprune.train import TrainConfig, evaluate, train

HERE = Path(__file__).resolve().parent / "sparsity_training"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--lambdas", default="0,1e-4,1e-3,3e-3,1e-2")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("cifar10", a.data_root)
    load_before, t0 = os.getloadavg(), time.perf_counter()
    rows, gammas = [], {}
    for lam in [float(v) for v in a.lambdas.split(",")]:
        torch.manual_seed(a.seed)
        model = build_model(ModelSpec(a.model, data.num_classes, data.in_channels, data.image_size))
        train(
            model,
            data,
            TrainConfig(epochs=a.epochs, lr=a.lr, sparsity_reg=lam, seed=a.seed),
            torch.device("cpu"),
            desc=f"lambda {lam:g}",
        )
        acc = evaluate(model, data, torch.device("cpu"))
        gammas[lam] = torch.cat(
            [
                m.weight.detach().abs()
                for m in model.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            ]
        )
        rows.append(
            {
                "lambda": lam,
                "share_below_1e-2": small_gamma_share(model, 1e-2),
                "share_below_1e-1": small_gamma_share(model, 1e-1),
                "median_abs_gamma": float(gammas[lam].median()),
                "top1": acc["top1"],
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [max(r["lambda"], 1e-5) for r in rows]
    ax1.semilogx(xs, [100 * r["share_below_1e-2"] for r in rows], "o-", label="|γ| < 1e-2")
    ax1.semilogx(xs, [100 * r["share_below_1e-1"] for r in rows], "s--", label="|γ| < 1e-1")
    ax1.set_xlabel("λ (λ=0 drawn at 1e-5)")
    ax1.set_ylabel("% of BN scales")
    ax1.legend()
    ax1.set_title(f"{a.model}, {a.epochs} epochs, real CIFAR-10 subset")
    for lam, g in gammas.items():
        ax2.hist(g.clamp_min(1e-4).log10().numpy(), bins=40, histtype="step", label=f"λ={lam:g}")
    ax2.set_xlabel("log10 |γ|")
    ax2.set_ylabel("BN scales")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out / "gamma_share.png", dpi=100)
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{threads}PYTHONPATH=$PWD python benchmarks/sparsity_training.py " + " ".join(
        argv or sys.argv[1:]
    )
    config = {
        "command": command,
        **vars(a),
        "wall_s": round(time.perf_counter() - t0, 1),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "machine": machine.describe(),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    md = [
        f"# Sparsity training of {a.model} on real CIFAR-10 (subset)",
        "",
        f"Command: `{command}`",
        "",
        f"{a.epochs} epochs from the same initialisation (seed {a.seed}), SGD lr {a.lr} cosine; λ·sign(γ) added "
        "to every BN scale gradient. Top-1 on the 1,017 test images.",
        "",
        "| λ | share of abs(γ) < 1e-2 | share of abs(γ) < 1e-1 | median abs(γ) | top-1 % |",
        "|---:|---:|---:|---:|---:|",
        *[
            f"| {r['lambda']:g} | {100 * r['share_below_1e-2']:.1f}% | {100 * r['share_below_1e-1']:.1f}% | "
            f"{r['median_abs_gamma']:.4f} | {100 * r['top1']:.2f} |"
            for r in rows
        ],
        "",
        "![share of small BN scales](gamma_share.png)",
        "",
        f"Machine: {config['machine']['cpu']}, torch {config['machine']['torch']}, "
        f"{config['machine']['torch_threads']} thread(s); load average before/after "
        f"{load_before[0]:.2f}/{config['loadavg_after'][0]:.2f}; wall {config['wall_s']:.0f} s.",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

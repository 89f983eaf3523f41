"""Cost of pruning itself (not of the pruned network): greedy on vgg16 with 1,024 calibration images
(goal <= 60 s) and dependency-graph build + l1 prune of resnet50 (goal <= 2 s), median and spread of
--repeats runs, with the load average next to them. Regenerates benchmarks/prune_cost/{results.md,
results.json} with one command:

    PYTHONPATH=$PWD python benchmarks/prune_cost.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from filterprune.benchmarking import machine
from filterprune.criteria import PruneContext, make_criterion
from filterprune.data import load_dataset
from filterprune.models import ModelSpec, build_model
from filterprune.pruning import PlanConfig, prune

HERE = Path(__file__).resolve().parent / "prune_cost"


def timed(name: str, fn, repeats: int) -> dict:
    """``fn(model)`` on a freshly built model each run; building the model is not timed."""
    times, loads = [], []
    for _ in range(repeats):
        torch.manual_seed(0)
        model = build_model(ModelSpec(name))
        t = time.perf_counter()
        fn(model)
        times.append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs_s": [round(v, 3) for v in times],
        "loadavg_1min": loads,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args(argv)
    x = torch.randn(1, 3, 32, 32)
    try:
        data = load_dataset("cifar10", a.data_root)
    except Exception:  # no real data here: the cost does not depend on the pixels
        data = load_dataset("synthetic")
    greedy_ctx = PruneContext(x, data=data, batch_size=64, calib_batches=16)

    def greedy(model):
        prune(model, make_criterion("greedy"), PlanConfig(0.4), greedy_ctx, 10)

    def l1(model):
        prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(x), 10)

    results = {
        "greedy vgg16, 1,024 calibration images (16 x 64), sparsity 0.4": {
            "goal_s": 60,
            **timed("vgg16", greedy, a.repeats),
        },
        "resnet50 graph build + l1 prune, sparsity 0.4": {"goal_s": 2, **timed("resnet50", l1, a.repeats)},
    }
    threads = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " if "OMP_NUM_THREADS" in os.environ else ""
    command = f"{threads}PYTHONPATH=$PWD python benchmarks/prune_cost.py " + " ".join(argv or sys.argv[1:])
    info = {"command": command, "data": data.name, "results": results, "machine": machine.describe()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(info, indent=2) + "\n")
    md = [
        "# Cost of pruning",
        "",
        f"Command: `{command}` (data: {data.name}; a fresh model per run, "
        "its construction not timed; the calibration batches are loaded inside the greedy time)",
        "",
        "| task | goal | median s | min–max s | 1-min load average during runs |",
        "|---|---:|---:|---:|---|",
        *[
            f"| {k} | ≤ {v['goal_s']} s | {v['median_s']:.2f} | {v['min_s']:.2f}–{v['max_s']:.2f} | "
            f"{', '.join(f'{v2:.1f}' for v2 in v['loadavg_1min'])} |"
            for k, v in results.items()
        ],
        "",
        f"Machine: {info['machine']['cpu']} ({info['machine']['cores']} cores), torch {info['machine']['torch']}, "
        f"{info['machine']['torch_threads']} thread(s).",
        "",
    ]
    (out / "results.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()

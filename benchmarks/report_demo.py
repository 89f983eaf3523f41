"""`filterprune report` on a small real sweep: ResNet-20 on the real CIFAR-10 subset, criteria x channel
sparsities x seeds, each run a full compress (baseline cached per seed, finetune, ONNX, interleaved
timing with CPU peak memory), then the report. Regenerates benchmarks/report_demo/ (tables, figures,
runs.csv, report.md, run_info.json) with one command; finished runs under --runs are reused:

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/report_demo.py --data-root ../shared/data

The run folders (weights, ONNX files) stay under --runs, outside the repository. Until `filterprune
sweep` exists this script is the grid; its folder has the sweep layout (DIR/runs/<run>/).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from filterprune.api import CompressConfig, compress
from filterprune.benchmarking import machine
from filterprune.fileio import atomic_write_json
from filterprune.reporting import report

HERE = Path(__file__).resolve().parent / "report_demo"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--criteria", default="l1,snip,random")
    p.add_argument("--sparsities", default="0.3,0.6")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=3, help="baseline epochs")
    p.add_argument("--finetune-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32, help="benchmark batch (the report's test time)")
    p.add_argument("--runs", default="/tmp/filterprune-report-demo", help="sweep folder (not committed)")
    p.add_argument("--out", default=str(HERE))
    a = p.parse_args(argv)
    runs = Path(a.runs)
    load_before, t0 = os.getloadavg(), time.perf_counter()
    for seed in [int(s) for s in a.seeds.split(",")]:
        for s in [float(x) for x in a.sparsities.split(",")]:
            for crit in a.criteria.split(","):
                run = runs / "runs" / f"{a.model}-{crit}-s{s:g}-seed{seed}"
                if (run / "report.json").is_file():
                    continue
                compress(
                    CompressConfig.of(
                        model=a.model,
                        criterion=crit,
                        sparsity=s,
                        round_to=1,  # exact counts: the committed numbers predate the default of 16
                        dataset="cifar10",
                        data_root=a.data_root,
                        epochs=a.epochs,
                        finetune_epochs=a.finetune_epochs,
                        seed=seed,
                        out=str(run),
                        overwrite=True,
                        bench_batch_sizes=(a.batch_size,),
                        bench_iters=20,
                        bench_memory=True,
                    )
                )
    runs_s = time.perf_counter() - t0
    load_mid = os.getloadavg()
    out = report(runs, a.out, "onnxruntime", a.batch_size)
    atomic_write_json(
        out / "run_info.json",
        {
            "command": "OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/report_demo.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "args": vars(a),
            "machine": machine.describe(),
            "runs_wall_s (0 when all were reused)": round(runs_s, 1),
            "load_avg_before": load_before,
            "load_avg_after_runs": load_mid,
            "load_avg_after_report": os.getloadavg(),
        },
    )
    print(out / "report.md")


if __name__ == "__main__":
    main()

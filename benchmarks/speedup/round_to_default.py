"""Which ``--round-to`` should compress default to? The same commands with each rounding, timed side by side.

For each case (default: the README's main command, ``vgg16 --criterion slimming --sparsity 0.4`` on its
cached 8-epoch baseline, and ``resnet56 --criterion l1 --sparsity 0.4`` untrained), runs ``filterprune
compress`` once per rounding (1, 8, 16, auto) with ``--finetune-epochs 0 --no-bench --precision fp32,int8``
(the widths, the ONNX files and their INT8 files are what the run writes; finetuning changes no width), and
records each run's wall time (``auto`` builds a latency table on a first run; cached afterwards). Then times
the dense file and every rounding's file interleaved in this one process (A B C D E A B C D E ...; a sample
is the mean over at least ``--min-s`` of calls; median and spread over ``--rounds``), per runtime, precision
and batch: onnxruntime CPU fp32 and int8, OpenVINO CPU fp32 (precision set explicitly). Speedup efficiency =
measured speedup / theoretical (MAC) speedup. Writes ``results.md`` / ``results.json`` into ``--out``.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/speedup/round_to_default.py   # alone on a quiet machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CASES = {
    "vgg16-slimming": ["vgg16", "--criterion", "slimming", "--sparsity", "0.4"],
    "resnet56-l1": ["resnet56", "--criterion", "l1", "--sparsity", "0.4", "--epochs", "0"],
}
ROUNDINGS = ("1", "8", "16", "auto")


def compress(case: str, rounding: str, work: Path, threads: int) -> dict:
    """One compress run (its folder under ``work``); its report's widths and theoretical speedup, and its
    wall time."""
    folder = work / f"{case}-r{rounding}"
    cmd = [sys.executable, "-m", "filterprune", "compress", *CASES[case], "--round-to", rounding]
    cmd += ["--finetune-epochs", "0", "--no-bench", "--precision", "fp32,int8", "--threads", str(threads)]
    cmd += ["--out", str(folder), "--overwrite"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    report = json.loads((folder / "report.json").read_text())
    return {
        "folder": folder,
        "wall_s": round(wall, 1),
        "theoretical_speedup": report["theoretical_speedup"],
        "widths": [row["channels_after"] for row in report["layers"]],
    }


def time_case(runs: dict, batch: int, a) -> list[dict]:
    """Dense and every rounding, interleaved, per (runtime, precision) at ``batch``."""
    from filterprune.benchmarking import quiet
    from filterprune.benchmarking.runners import openvino_parity, ort_runner, ov_runner
    from filterprune.pruning.latency_target import interleaved_samples

    first = next(iter(runs.values()))["folder"]
    size = 32
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    rows = []
    for runtime, precision in (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32")):
        suffix = ".int8.onnx" if precision == "int8" else ".onnx"
        paths = {"dense": first / f"dense{suffix}"} | {
            f"r{k}": r["folder"] / f"model{suffix}" for k, r in runs.items()
        }
        if runtime == "onnxruntime":
            calls = {k: ort_runner(p, x, "cpu", a.threads) for k, p in paths.items()}
        else:
            for p in paths.values():
                openvino_parity(p, x[:2], a.threads)
            calls = {k: ov_runner(p, x, a.threads, precision) for k, p in paths.items()}
        load0 = os.getloadavg()[0]
        with quiet.Watch() as watch:
            samples = interleaved_samples(calls, a.rounds, a.min_s)
        busy = watch.verdict()["why"]
        dense = statistics.median(samples["dense"])
        for name, v in samples.items():
            p50 = statistics.median(v)
            theo = runs[name[1:]]["theoretical_speedup"] if name != "dense" else 1.0
            rows.append(
                {
                    "runtime": runtime,
                    "precision": precision,
                    "batch": batch,
                    "variant": name,
                    "p50_ms": round(p50, 3),
                    "spread": round((float(np.percentile(v, 90)) - float(np.percentile(v, 10))) / p50, 3),
                    "speedup": round(dense / p50, 3),
                    "theoretical": round(theo, 3),
                    "efficiency": round(dense / p50 / theo, 3),
                    "loadavg_before": round(load0, 2),
                    "busy": busy,
                }
            )
        print(f"round_to_default: {runtime} {precision} batch {batch} done", file=sys.stderr, flush=True)
    return rows


def markdown(results: dict, env: dict) -> str:
    lines = [
        "# Which `--round-to` default? The same commands with each rounding, timed side by side",
        "",
        f"Machine: {env['cpu']} ({env['cores']} cores), {env['threads']} thread(s); torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, OpenVINO {env['openvino']}; {env['date']}; load average "
        f"{env['loadavg_start']:.2f} at the start, {env['loadavg_end']:.2f} at the end. Command: "
        f"`{env['command']}`. Median of {env['rounds']} interleaved rounds; speedup against the dense file at "
        "the same runtime, precision and batch; efficiency = speedup / theoretical (MAC) speedup.",
        "",
    ]
    for case, res in results.items():
        lines += [f"## `filterprune compress {' '.join(CASES[case])}`", ""]
        lines += [
            "| --round-to | theoretical | run wall s | "
            + " | ".join(
                f"{r['runtime']} {r['precision']} b{r['batch']}"
                for r in res["rows"]
                if r["variant"] == "dense"
            )
            + " |"
        ]
        blocks = [r for r in res["rows"] if r["variant"] == "dense"]
        lines += ["|---|---:|---:|" + "---:|" * len(blocks)]
        for k, run in res["runs"].items():
            cells = []
            for b in blocks:
                key = (b["runtime"], b["precision"], b["batch"], f"r{k}")
                r = next(
                    r for r in res["rows"] if (r["runtime"], r["precision"], r["batch"], r["variant"]) == key
                )
                cells.append(f"{r['speedup']:.2f}x ({r['efficiency']:.2f})")
            lines.append(
                f"| {k} | {run['theoretical_speedup']:.2f}x | {run['wall_s']:.0f} | "
                + " | ".join(cells)
                + " |"
            )
        dense = " · ".join(
            f"{b['runtime']} {b['precision']} b{b['batch']} {b['p50_ms']:.2f} ms" for b in blocks
        )
        lines += ["", f"Dense: {dense}. Cells: speedup (efficiency).", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from filterprune.benchmarking import machine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--batches", default="1,32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--min-s", type=float, default=0.2)
    p.add_argument("--out", default=str(HERE / "round_to_default"))
    p.add_argument("--work", default="/tmp/round_to_default-runs", help="the compress runs' folders")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    results = {}
    for case in a.cases.split(","):
        runs = {k: compress(case, k, Path(a.work), a.threads) for k in ROUNDINGS}
        rows = [row for b in a.batches.split(",") for row in time_case(runs, int(b), a)]
        results[case] = {
            "runs": {k: {**r, "folder": r["folder"].name} for k, r in runs.items()},
            "rows": rows,
        }
    from importlib.metadata import version

    env = machine.describe() | {
        "openvino": version("openvino"),
        "threads": a.threads,
        "rounds": a.rounds,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg_start": load0,
        "loadavg_end": os.getloadavg()[0],
        "command": "python benchmarks/speedup/round_to_default.py " + " ".join(argv or sys.argv[1:]),
    }
    (out / "results.json").write_text(json.dumps({"env": env, "results": results}, indent=1) + "\n")
    (out / "results.md").write_text(markdown(results, env))
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()

"""Does ``--target-speedup 2`` deliver 2x on the user's runtime? (issue 15)

For each model (random init: latency does not depend on the weights) and each target (runtime, batch):
plain torch-pruning (l1, sparsity 0.4, MAC-driven widths), ``--round-to auto`` (l1, 0.4) and
``--target-speedup 2`` are planned; then the dense model and the three pruned ones are exported to ONNX
and timed *again, apart from the planner*, interleaved in this one process on that runtime (median of
rounds, min–max), with the machine's quietness sampled before and during (bench/quiet.py). Writes
``target_speedup.md`` / ``.csv`` / ``.json`` next to this file.

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/speedup/target_speedup.py      # ~15-25 min, alone
    PYTHONPATH=$PWD python benchmarks/speedup/target_speedup.py --smoke   # the code path, a temporary folder

Needs a quiet machine (run nothing else); the report says when it was not.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = {"vgg16": 32, "resnet56": 32, "tv:mobilenet_v2": 32, "tv:resnet18": 224}
TARGETS = [("onnxruntime", 64), ("onnxruntime", 1), ("openvino", 64)]
SMOKE = {"models": "resnet20", "targets": "onnxruntime:4", "speedup": 1.2, "rounds": 2}  # the code path
SIZES = {**MODELS, "resnet20": 16}  # the smoke model at 16 px: its latency table is small


def plans(model: str, size: int, runtime: str, batch: int, threads: int, speedup: float) -> dict:
    from filterprune.criteria import PruneContext, make_criterion
    from filterprune.errors import RunError, UsageError
    from filterprune.models import ModelSpec, build_model
    from filterprune.pruning import PlanConfig, prune_in_steps
    from filterprune.targets import Speedup

    torch.manual_seed(0)
    dense = build_model(ModelSpec(model, 10, 3, size)).eval()
    ctx = PruneContext(example_inputs=torch.randn(1, 3, size, size))
    out, records = {"dense": dense}, {}
    lut_runtime = "onnxruntime" if runtime == "openvino" else runtime  # round-to auto measures ORT/torch only
    for name, plan in (
        ("plain", PlanConfig(0.4)),
        ("round-to auto", PlanConfig(0.4, round_to="auto", target_runtime=lut_runtime, target_batch=batch)),
        (
            f"target {speedup:g}x",
            PlanConfig(Speedup(speedup), target_runtime=runtime, target_batch=batch, threads=threads),
        ),
    ):
        net = copy.deepcopy(dense)
        t0 = time.perf_counter()
        try:
            res = prune_in_steps(net, make_criterion("l1"), plan, ctx, 10)
        except (RunError, UsageError) as e:  # a target the floors make unreachable: recorded, the run goes on
            records[name] = {"plan_s": round(time.perf_counter() - t0, 1), "unreachable": str(e)}
            continue
        out[name] = net.eval()
        records[name] = {"plan_s": round(time.perf_counter() - t0, 1), "latency_target": res.latency_target}
    return out, records


def time_onnx(models: dict, size: int, runtime: str, batch: int, threads: int, rounds: int) -> dict:
    """Each model exported to ONNX and timed on ``runtime`` from that file, interleaved."""
    from filterprune.benchmarking.runners import ort_runner, ov_runner
    from filterprune.exporting.convert import export_onnx
    from filterprune.pruning.latency_target import interleaved_samples

    x = torch.randn(batch, 3, size, size)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, m in models.items():
            path = export_onnx(m, Path(tmp) / f"{len(runs)}.onnx", (3, size, size))
            runs[k] = (
                ov_runner(path, x, threads) if runtime == "openvino" else ort_runner(path, x, "cpu", threads)
            )
        samples = interleaved_samples(runs, rounds, min_s=0.1)
    return {
        k: {
            "p50_ms": statistics.median(v),
            "min_ms": min(v),
            "max_ms": max(v),
            "spread": (sorted(v)[int(0.9 * (len(v) - 1))] - statistics.median(v)) / statistics.median(v),
        }
        for k, v in samples.items()
    }


def options(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help=f"default {','.join(MODELS)}")
    p.add_argument(
        "--targets",
        default=None,
        help="runtime:batch,... (default: onnxruntime:64,onnxruntime:1,openvino:64)",
    )
    p.add_argument("--speedup", type=float, default=None, help="default 2")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=None, help="default 9")
    p.add_argument(
        "--out", default=None, help="default: benchmarks/speedup/target_speedup (--smoke: a temporary folder)"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="resnet20 at 16 px, onnxruntime batch 4, target 1.2: the code path",
    )
    a = p.parse_args(argv)
    full = {"models": ",".join(MODELS), "targets": ",".join(f"{r}:{b}" for r, b in TARGETS), "speedup": 2.0,
            "rounds": 9, "out": str(HERE / "target_speedup")}  # fmt: skip
    for k, v in (SMOKE if a.smoke else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.out = a.out or tempfile.mkdtemp(prefix="target-speedup-smoke-")  # a smoke run's numbers are not results
    return a


def main(argv=None) -> int:
    from filterprune.benchmarking import counting, quiet
    from filterprune.pruning import latency_target

    a = options(argv)
    if a.smoke:  # few candidates, short timings: the code path, not a number
        latency_target.ROUNDS, latency_target.ITERATIONS = 3, 2
    rows, t_start = [], time.perf_counter()
    done_file = Path(a.out) / "target_speedup.json"
    if done_file.is_file():  # resume: (model, runtime, batch) already measured are kept, not redone
        rows = json.loads(done_file.read_text())["rows"]
    done = {(r["model"], r["runtime"], r["batch"]) for r in rows}
    with quiet.Watch() as watch:
        for model in a.models.split(","):
            size = SIZES.get(model, 32)
            for target in a.targets.split(","):
                runtime, batch = target.rsplit(":", 1)
                batch = int(batch)
                if (model, runtime, batch) in done:
                    continue
                nets, records = plans(model, size, runtime, batch, a.threads, a.speedup)
                times = time_onnx(nets, size, runtime, batch, a.threads, a.rounds)
                macs = {k: counting.count(m, (3, size, size)).macs for k, m in nets.items()}
                for k, rec in records.items():
                    if "unreachable" in rec:
                        rows.append(
                            {
                                "model": model,
                                "image_size": size,
                                "runtime": runtime,
                                "batch": batch,
                                "plan": k,
                                "dense_ms": round(times["dense"]["p50_ms"], 3),
                                "pruned_ms": "",
                                "pruned_min_max_ms": "",
                                "measured_speedup": "",
                                "theoretical_speedup": "",
                                "efficiency": "",
                                "planner_speedup": rec["unreachable"],
                                "plan_s": rec["plan_s"],
                                "worst_spread": 0.0,
                            }
                        )
                for k in nets:
                    if k == "dense":
                        continue
                    sp = times["dense"]["p50_ms"] / times[k]["p50_ms"]
                    th = macs["dense"] / macs[k]
                    lt = records[k]["latency_target"] or {}
                    rows.append(
                        {
                            "model": model,
                            "image_size": size,
                            "runtime": runtime,
                            "batch": batch,
                            "plan": k,
                            "dense_ms": round(times["dense"]["p50_ms"], 3),
                            "pruned_ms": round(times[k]["p50_ms"], 3),
                            "pruned_min_max_ms": f"{times[k]['min_ms']:.3f}-{times[k]['max_ms']:.3f}",
                            "measured_speedup": round(sp, 3),
                            "theoretical_speedup": round(th, 3),
                            "efficiency": round(sp / th, 3),
                            "planner_speedup": round(lt.get("measured_speedup", 0) or 0, 3) or "",
                            "plan_s": records[k]["plan_s"],
                            "worst_spread": round(max(t["spread"] for t in times.values()), 3),
                        }
                    )
                print(
                    f"{model} {runtime} b{batch}: "
                    + ", ".join(f"{r['plan']} {r['measured_speedup'] or 'unreachable'}" for r in rows[-3:]),
                    file=sys.stderr,
                    flush=True,
                )
                write(a, rows, watch, t_start)  # after every target: a killed run keeps what it measured
    print(Path(a.out) / "target_speedup.md")
    return 0


def write(a, rows: list[dict], watch, t_start: float) -> None:
    from filterprune.benchmarking import machine, quiet

    verdict = watch.verdict([r["worst_spread"] for r in rows])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "target_speedup.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    env = {
        "machine": machine.describe(),
        "threads": a.threads,
        "quiet": verdict,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    (out / "target_speedup.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    lines = [
        f"# --target-speedup {a.speedup:g} vs plain torch-pruning vs --round-to auto (l1)",
        "",
        "Command: `OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/speedup/target_speedup.py`. "
        f"Timed from the ONNX files, apart from the planner, {a.threads} thread(s), median of {a.rounds} "
        "interleaved rounds. Plain and round-to auto at channel sparsity 0.4.",
        "",
    ]
    if quiet.warning(verdict):
        lines += [quiet.warning(verdict), ""]
    lines += [
        "| model | runtime | batch | plan | dense ms | pruned ms | measured | theoretical | efficiency |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} ({r['image_size']} px) | {r['runtime']} | {r['batch']} | {r['plan']} | {r['dense_ms']:.2f} | "
        f"{r['pruned_ms']:.2f} | **{r['measured_speedup']:.2f}x** | {r['theoretical_speedup']:.2f}x | "
        f"{r['efficiency']:.2f} |"
        if r["measured_speedup"] != ""
        else f"| {r['model']} ({r['image_size']} px) | {r['runtime']} | {r['batch']} | {r['plan']} | {r['dense_ms']:.2f} | "
        f"— | refused: {r['planner_speedup'].split(': ', 1)[-1]} | | |"
        for r in rows
    ]
    m = env["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores), torch {m['torch']}, onnxruntime {m['onnxruntime']}; "
        f"other processes' load before/during {verdict['other_load_before']}/{verdict['other_load_during']} "
        f"cores; wall {env['wall_s']:.0f} s.",
    ]
    (out / "target_speedup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())

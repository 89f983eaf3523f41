"""Does the pruning speedup survive quantization? The precision table on CPU runtimes.

For each model (random init: latency does not depend on the weights), the widths of ``--target-speedup 2
--target-precision int8`` (l1, planned at batch 32 on each runtime's own INT8 kernels: ``--target-runtime
onnxruntime`` and ``openvino``; a target out of reach is planned again just under the best speedup measured,
and the record says so), then the dense and the pruned network as the run deploys them: the fp32 ONNX file and its INT8 file (onnxruntime static
quantization, QDQ, per-channel weights, calibrated on seeded random images: a kernel's speed does not
depend on the scales). Timed per (runtime, batch), all variants of a runtime interleaved in this one
process (A B C D A B C D ...; a sample is the mean over at least ``--min-s`` of calls; median and spread
over ``--rounds``):

- onnxruntime (CPU provider): dense fp32, pruned fp32, dense int8, pruned int8;
- OpenVINO (CPU, latency hint, precision set explicitly): the same four (f32 for the fp32 files, the INT8
  files' QDQ ops in int8), and dense / pruned bf16 where the CPU has it (the fp32 files computed in bf16).

Speedups are against the dense fp32 file on the same runtime and batch, and (int8, bf16) against the
dense file at the same precision. The load average and other processes' CPU use are recorded with every
block. Writes ``results.md``, ``results.csv`` and ``results.json`` into ``--out`` (default
``benchmarks/precision/``); models already in ``results.json`` are kept (``--fresh`` redoes them).

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/precision_table.py      # alone on a quiet machine
    PYTHONPATH=$PWD python benchmarks/precision_table.py --smoke --out /tmp/p   # the code path, ~1-2 min

Full setting on the project's 2-core machine, estimated (not timed) at 20-40 minutes: ~1,100 INT8 probe
convs for the four latency tables (~0.3 s each, cached on disk for a rerun), up to 14 candidate timings per
plan (~5-10 s each at 224 px), then ~1-2 minutes of table timing per model. Needs a quiet machine; the
report says when it was not.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MODELS = {"vgg16": 32, "resnet56": 32, "tv:resnet18": 224, "tv:mobilenet_v2": 224}
SMOKE_MODELS = {"resnet20": 16}
BATCHES = (1, 32)
CALIB = 16  # random calibration images of the INT8 files
GOAL_VS_INT8, GOAL_VS_FP32 = 1.9, 4.0  # pruned int8 against dense int8 / dense fp32 at batch 32
FALLBACK = 0.97  # an unreachable target is planned again at this fraction of the best speedup measured


def plan(dense: torch.nn.Module, size: int, runtime: str, a) -> tuple[torch.nn.Module | None, dict]:
    """``dense`` pruned for ``--target-speedup`` on ``runtime``'s INT8 kernels. A target out of reach is
    planned again at just under the best speedup the planner measured (the record says so), so the table
    shows what pruning does reach there; None when not even that is found."""
    from filterprune.criteria import PruneContext, make_criterion
    from filterprune.errors import RunError, UsageError
    from filterprune.pruning import PlanConfig, prune_in_steps
    from filterprune.targets import Speedup

    record: dict = {"asked": a.target_speedup}
    target, t0 = a.target_speedup, time.perf_counter()
    for _ in range(2):
        cfg = PlanConfig(
            Speedup(target),
            target_runtime=runtime,
            target_batch=a.target_batch,
            threads=a.threads,
            target_precision="int8",
        )
        net = copy.deepcopy(dense)
        try:
            res = prune_in_steps(
                net, make_criterion("l1"), cfg, PruneContext(torch.randn(1, 3, size, size)), 10
            )
        except (RunError, UsageError) as e:
            record["unreachable"] = str(e)
            reach = re.search(r"allow is ([0-9.]+)x", str(e))
            if reach is None or float(reach.group(1)) * FALLBACK <= 1.05 or target != a.target_speedup:
                break
            target = record["fallback_target"] = round(float(reach.group(1)) * FALLBACK, 2)
            continue
        record.update(plan_s=round(time.perf_counter() - t0, 1), latency_target=res.latency_target)
        return net.eval(), record
    record["plan_s"] = round(time.perf_counter() - t0, 1)
    return None, record


def files(nets: dict, size: int, folder: Path) -> dict:
    """(variant, precision) -> the ONNX file as deployed: fp32 (torch's exporter, as compress writes it) and
    its INT8 file."""
    import onnx

    from filterprune.exporting import quantize
    from filterprune.exporting.convert import export_onnx

    calib = torch.randn(CALIB, 3, size, size, generator=torch.Generator().manual_seed(0)).numpy()
    out = {}
    for name, net in nets.items():
        fp32 = export_onnx(net, folder / f"{name}.onnx", (3, size, size))
        int8 = quantize.quantize(onnx.load(str(fp32)), calib, {"images": CALIB, "source": "random, seed 0"})
        (folder / f"{name}.int8.onnx").write_bytes(int8.SerializeToString())
        out[(name, "fp32")], out[(name, "int8")] = fp32, folder / f"{name}.int8.onnx"
    return out


def runners(paths: dict, runtime: str, x: torch.Tensor, threads: int, bf16: bool) -> dict:
    """label -> one inference, for every (variant, precision) that ``runtime`` runs."""
    from filterprune.benchmarking.runners import openvino_parity, ort_runner, ov_runner

    runs = {}
    for (variant, precision), path in paths.items():
        if runtime == "onnxruntime":
            runs[(variant, precision)] = ort_runner(path, x, "cpu", threads)
            continue
        if precision == "fp32":  # what an fp32 row claims: OpenVINO computes what onnxruntime computes
            openvino_parity(path, x[:2], threads)
        runs[(variant, precision)] = ov_runner(path, x, threads, precision)
        if precision == "fp32" and bf16:
            runs[(variant, "bf16")] = ov_runner(path, x, threads, "bf16")
    return runs


def block(model: str, runtime: str, batch: int, paths: dict, size: int, a) -> list[dict]:
    """One (runtime, batch): every variant and precision interleaved; one row each."""
    from filterprune.benchmarking import quiet
    from filterprune.pruning.latency_target import interleaved_samples

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    load0 = os.getloadavg()[0]
    with quiet.Watch() as watch:
        samples = interleaved_samples(runners(paths, runtime, x, a.threads, a.bf16), a.rounds, a.min_s)
    verdict = watch.verdict()
    stats = {k: (statistics.median(v), v) for k, v in samples.items()}
    rows = []
    for (variant, precision), (p50, v) in stats.items():
        dense_fp32, dense_same = stats[("dense", "fp32")][0], stats[("dense", precision)][0]
        rows.append(
            {
                "model": model,
                "runtime": runtime,
                "batch": batch,
                "variant": variant,
                "precision": precision,
                "p50_ms": round(p50, 4),
                "p10_ms": round(float(np.percentile(v, 10)), 4),
                "p90_ms": round(float(np.percentile(v, 90)), 4),
                "min_ms": round(min(v), 4),
                "max_ms": round(max(v), 4),
                "spread": round((float(np.percentile(v, 90)) - float(np.percentile(v, 10))) / p50, 4),
                "rounds": len(v),
                "speedup_vs_dense_fp32": round(dense_fp32 / p50, 4),
                "speedup_vs_dense_same_precision": round(dense_same / p50, 4),
                "loadavg_before": round(load0, 2),
                "loadavg_after": round(os.getloadavg()[0], 2),
                "other_cpu_during": verdict["other_load_during"],
                "busy": verdict["why"],
            }
        )
    return rows


def model_rows(model: str, size: int, a) -> tuple[list[dict], dict]:
    """The dense network and, per runtime, the one pruned on that runtime's INT8 kernels; each runtime's
    block times dense and its own pruned network."""
    from filterprune.benchmarking import counting
    from filterprune.models import ModelSpec, build_model

    torch.manual_seed(0)
    dense = build_model(ModelSpec(model, 10, 3, size)).eval()
    nets, record = {"dense": dense}, {"plans": {}}
    for runtime in a.runtimes:
        print(
            f"precision_table: {model}: --target-speedup {a.target_speedup:g} on {runtime} int8",
            file=sys.stderr,
        )
        pruned, record["plans"][runtime] = plan(dense, size, runtime, a)
        if pruned is not None:
            nets[f"pruned@{runtime}"] = pruned
    record["macs"] = {k: counting.count(m, (3, size, size)).macs for k, m in nets.items()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="precision-table-") as tmp:
        paths = files(nets, size, Path(tmp))
        for batch in a.batches:
            for runtime in a.runtimes:
                own = {
                    (v.split("@")[0], p): f
                    for (v, p), f in paths.items()
                    if v in ("dense", f"pruned@{runtime}")
                }
                rows += block(model, runtime, batch, own, size, a)
                print(f"precision_table: {model} {runtime} batch {batch} done", file=sys.stderr, flush=True)
    return rows, record


COLUMNS = [
    "model", "runtime", "batch", "variant", "precision", "p50_ms", "p10_ms", "p90_ms", "min_ms", "max_ms",
    "spread", "rounds", "speedup_vs_dense_fp32", "speedup_vs_dense_same_precision", "loadavg_before",
    "loadavg_after", "other_cpu_during", "busy",
]  # fmt: skip


def markdown(rows: list[dict], records: dict, env: dict) -> str:
    """results.md: per model and runtime, one line per batch; the goal at batch 32 on onnxruntime."""
    lines = [
        "# Pruning speedup under quantization (CPU)",
        "",
        f"Machine: {env['cpu']} ({env['cores']} cores), {env['threads']} thread(s); torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, OpenVINO {env['openvino'] or 'not installed'}; "
        f"{env['date']}, {env['wall_min']:.0f} min; load average {env['loadavg_start']:.2f} at the start, "
        f"{env['loadavg_end']:.2f} at the end. Command: `{env['command']}`.",
        "",
        f"Pruned: l1, `--target-speedup {env['target_speedup']:g} --target-precision int8` planned on each "
        f"runtime's own INT8 kernels at batch {env['target_batch']} (`--target-runtime`: the onnxruntime rows "
        f"time the onnxruntime plan, the OpenVINO rows the OpenVINO plan); random-init models. Median ms of {env['rounds']} "
        "interleaved rounds, (x) = speedup against dense fp32 on the same runtime and batch; "
        "`int8 gain` = pruned int8 against dense int8.",
        "",
        "| model | runtime | batch | dense fp32 | pruned fp32 | dense int8 | pruned int8 | int8 gain "
        "| dense bf16 | pruned bf16 | spread (max) | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    keyed = {(r["model"], r["runtime"], r["batch"], r["variant"], r["precision"]): r for r in rows}
    blocks = dict.fromkeys((r["model"], r["runtime"], r["batch"]) for r in rows)
    for model, runtime, batch in blocks:

        def cell(v, p, k=(model, runtime, batch)):
            r = keyed.get((*k, v, p))
            return f"{r['p50_ms']:.2f} ({r['speedup_vs_dense_fp32']:.2f}x)" if r else "—"

        pruned_int8 = keyed.get((model, runtime, batch, "pruned", "int8"))
        gain = f"**{pruned_int8['speedup_vs_dense_same_precision']:.2f}x**" if pruned_int8 else "—"
        these = [r for r in rows if (r["model"], r["runtime"], r["batch"]) == (model, runtime, batch)]
        lines.append(
            f"| {model} | {runtime} | {batch} | {cell('dense', 'fp32')} | {cell('pruned', 'fp32')} | "
            f"{cell('dense', 'int8')} | {cell('pruned', 'int8')} | {gain} | "
            f"{cell('dense', 'bf16')} | {cell('pruned', 'bf16')} | {max(r['spread'] for r in these):.2f} | "
            f"{these[0]['loadavg_before']:.2f} |"
        )
    lines += ["", "## Goal", "", *goal_lines(keyed, records, env), "", "## Plans", ""]
    for model, rec in records.items():
        for runtime, p in rec["plans"].items():
            lines.append(
                f"- {model} on {runtime}: {plan_line(p, rec['macs'].get(f'pruned@{runtime}'), rec['macs'])}"
            )
    busy = sorted({r["busy"] for r in rows if r["busy"]})
    if busy:
        lines += ["", f"**The machine was not quiet while timing** ({'; '.join(busy)}): rerun alone."]
    return "\n".join(lines) + "\n"


def plan_line(p: dict, macs: int | None, all_macs: dict) -> str:
    lt = p.get("latency_target")
    asked = f"asked {p['asked']:.2f}x: out of reach ({p['unreachable']}); " if "unreachable" in p else ""
    if lt is None:
        return asked + "no plan"
    fallback = f"planned at {p['fallback_target']:.2f}x instead; " if "fallback_target" in p else ""
    return (
        f"{asked}{fallback}planned in {p['plan_s']:.0f} s ({lt['conv_latencies_measured']} INT8 conv latencies "
        f"measured, {len(lt['iterations'])} candidates); planner measured {lt['measured_speedup']:.2f}x against "
        f"dense int8, {lt.get('speedup_vs_dense_fp32', 0):.2f}x against dense fp32; MACs "
        f"{all_macs['dense'] / macs:.2f}x fewer"
    )


def goal_lines(keyed: dict, records: dict, env: dict) -> list[str]:
    """Batch 32, per runtime: pruned int8 >= 1.9x dense int8 on every model, >= 4x dense fp32 on three."""
    out = []
    for runtime in env["runtimes"]:
        vs_fp32 = 0
        for model in records:
            r = keyed.get((model, runtime, 32, "pruned", "int8"))
            if r is None:
                out.append(f"- {runtime}, {model}: no pruned int8 row at batch 32")
                continue
            ok = r["speedup_vs_dense_same_precision"] >= GOAL_VS_INT8
            vs_fp32 += r["speedup_vs_dense_fp32"] >= GOAL_VS_FP32
            out.append(
                f"- {runtime}, {model}: pruned int8 {r['speedup_vs_dense_same_precision']:.2f}x against dense "
                f"int8 ({'meets' if ok else 'misses'} {GOAL_VS_INT8}x), {r['speedup_vs_dense_fp32']:.2f}x "
                "against dense fp32"
            )
        out.append(
            f"- {runtime}: {vs_fp32} of {len(records)} model(s) at >= {GOAL_VS_FP32}x against dense fp32 "
            "(goal: 3 of 4)"
        )
    return out


def write(out: Path, rows: list[dict], records: dict, env: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"env": env, "records": records, "rows": rows}, indent=1))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (out / "results.md").write_text(markdown(rows, records, env))


def environment(a, t0: float, load0: float) -> dict:
    from filterprune.benchmarking.machine import describe, run_record

    try:
        import openvino

        ov = openvino.__version__
    except ImportError:
        ov = None
    info = describe()
    return {
        **info,
        "openvino": ov,
        "threads": a.threads,
        "runtimes": list(a.runtimes),
        "target_speedup": a.target_speedup,
        "target_batch": a.target_batch,
        "rounds": a.rounds,
        "min_s": a.min_s,
        **run_record("benchmarks/precision_table.py", a.argv, t0, load0),
        "smoke": a.smoke,
    }


def options(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help=f"comma-separated (default: {','.join(MODELS)})")
    p.add_argument("--batches", default=None, help="comma-separated (default: 1,32)")
    p.add_argument("--target-speedup", type=float, default=None, help="default 2")
    p.add_argument("--target-batch", type=int, default=None, help="default 32")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per block (default 11)")
    p.add_argument("--min-s", type=float, default=None, help="seconds of calls per sample (default 0.2)")
    p.add_argument("--out", default=None, help="default: benchmarks/precision (--smoke: a temporary folder)")
    p.add_argument("--fresh", action="store_true", help="redo models already in results.json")
    p.add_argument(
        "--smoke", action="store_true", help="resnet20 at 16 px, batches 1,4, 2 rounds: the code path"
    )
    a = p.parse_args(argv)
    a.argv = list(argv if argv is not None else sys.argv[1:])
    smoke = {"models": ",".join(SMOKE_MODELS), "batches": "1,4", "target_speedup": 1.2, "target_batch": 4,
             "rounds": 2, "min_s": 0.01}  # fmt: skip
    full = {"models": ",".join(MODELS), "batches": ",".join(map(str, BATCHES)), "target_speedup": 2.0,
            "target_batch": 32, "rounds": 11, "min_s": 0.2, "out": str(HERE / "precision")}  # fmt: skip
    for k, v in (smoke if a.smoke else full).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.batches = [int(b) for b in a.batches.split(",")]
    a.out = a.out or tempfile.mkdtemp(prefix="precision-smoke-")  # a smoke run's numbers are not results
    return a


def main(argv=None) -> int:
    a = options(argv)
    from filterprune.pruning import latency_target

    if a.smoke:  # few candidates, short timings: the code path, not a number
        latency_target.ROUNDS, latency_target.ITERATIONS = 3, 2
    try:
        from filterprune.benchmarking.runners import ov_has_bf16

        ov_has_bf16()
        a.runtimes = ("onnxruntime", "openvino")
        a.bf16 = ov_has_bf16()
    except Exception:  # noqa: BLE001 - no OpenVINO: onnxruntime rows only, and the report says so
        a.runtimes, a.bf16 = ("onnxruntime",), False
    torch.set_num_threads(a.threads)
    out, t0, load0 = Path(a.out), time.perf_counter(), os.getloadavg()[0]
    done = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    rows, records = (done.get("rows", []), done.get("records", {})) if not a.fresh else ([], {})
    for model in a.models.split(","):
        if model in records:
            continue
        size = {**MODELS, **SMOKE_MODELS}.get(model, 32)
        new_rows, records[model] = model_rows(model, size, a)
        rows = [r for r in rows if r["model"] != model] + new_rows
        write(out, rows, records, environment(a, t0, load0))  # after each model: a killed run keeps them
    write(out, rows, records, environment(a, t0, load0))
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

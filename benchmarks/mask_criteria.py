"""Masked vs shrunk: the seed studies' unstructured methods (rand, mag, snip, grasp, synflow, imp) at a few
compressions on the real CIFAR-10 subset, each run once through ``filterprune compress``: the masked
control (dense shape, zeros kept) and the shrunk model (channels removed at --sparsity) side by side.

    PYTHONPATH=$PWD python benchmarks/mask_criteria.py --model vgg16   # the seed setting (quiet machine)
    PYTHONPATH=$PWD python benchmarks/mask_criteria.py --model mlp     # what fits a loaded 2-core CPU
    ... --fresh                                                         # redo runs that already finished
    ... --report-only                                                   # tables from finished runs only

Writes benchmarks/mask_criteria/<model>/{results.csv,results.md} and one report folder per run under
benchmarks/mask_criteria/<model>/runs/ (report.json + report.md kept; ONNX files and weights removed;
git-ignored). Every run compresses the same cached baseline (``FILTERPRUNE_CACHE`` decides where).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "mask_criteria"
METHODS = ("rand", "mag", "snip", "grasp", "synflow", "imp")
CONFIG = dict(
    dataset="cifar10",
    data_root=str(Path(__file__).resolve().parents[2] / "shared" / "data"),
    sparsity=0.4,
    round_to=1,  # exact counts: the committed numbers predate the default of 16
    batch_size=64,
    imp_iterations=2,
    bench_batch_sizes=(1, 32),
    bench_iters=30,
    seed=0,
)
COMPRESSIONS = (0.5, 1.0, 2.0)
KEEP = ("report.json", "report.md")


def run_one(method: str, c: float, fresh: bool, run_cfg: dict, folder: Path) -> dict:
    from filterprune.api import CompressConfig, compress
    from filterprune.reporting.schema import read_report

    out = folder / "runs" / f"{method}-c{c:g}"
    if fresh or not (out / "report.json").is_file():
        load = os.getloadavg()
        compress(CompressConfig.of(criterion=method, compression=c, out=str(out), overwrite=True, **run_cfg))
        for p in out.iterdir():
            if p.name not in KEEP:
                p.unlink()
        r = {**read_report(out), "loadavg_before": load, "loadavg_after": os.getloadavg()}
        (out / "report.json").write_text(json.dumps(r, indent=1))
    return read_report(out)


def row(r: dict) -> dict:
    d, p, m = r["dense"], r["pruned"], r["masked"]
    lat = {(x["runtime"], x["batch_size"]): x for x in r["latency"]}
    out = {
        "method": r["criterion"],
        "compression": m["compression"],
        "weight_density": m["weight_density"],
        "dense_acc": d["accuracy"],
        "masked_acc": m["accuracy"],
        "shrunk_acc": p["accuracy"],
        "masked_flop_fraction": m["flop_fraction"],
        "shrunk_flop_fraction": p["flops"] / d["flops"],
        "masked_mac_fraction": m["macs"] / d["macs"],
        "shrunk_mac_fraction": p["macs"] / d["macs"],
        "channel_sparsity": r["channel_sparsity"],
    }
    for (rt, b), x in sorted(lat.items()):
        out[f"{rt}_b{b}_dense_ms"] = x["dense_ms"]
        out[f"{rt}_b{b}_masked_speedup"] = x.get("masked_speedup")
        out[f"{rt}_b{b}_shrunk_speedup"] = x["speedup"]
    out["loadavg_1m"] = r.get("loadavg_after", [None])[0]
    return out


def markdown(rows: list[dict], machine: dict, run_cfg: dict) -> str:
    head = (
        "| method | c | weight density | masked top-1 | shrunk top-1 | masked FLOP frac. | shrunk FLOP frac. | "
        "shrunk MAC frac. | masked speedup ort b32 | shrunk speedup ort b32 | masked speedup torch b32 | "
        "shrunk speedup torch b32 |"
    )
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in rows:
        lines.append(
            f"| {x['method']} | {x['compression']:g} | {x['weight_density']:.4f} | {100 * x['masked_acc']:.2f}% | "
            f"{100 * x['shrunk_acc']:.2f}% | {x['masked_flop_fraction']:.4f} | {x['shrunk_flop_fraction']:.4f} | "
            f"{x['shrunk_mac_fraction']:.4f} | {x['onnxruntime_b32_masked_speedup']:.2f}x | "
            f"{x['onnxruntime_b32_shrunk_speedup']:.2f}x | {x['torch_b32_masked_speedup']:.2f}x | "
            f"{x['torch_b32_shrunk_speedup']:.2f}x |"
        )
    dense = rows[0]["dense_acc"] if rows else float("nan")
    loads = ", ".join(f"{x['loadavg_1m']:.1f}" for x in rows if x["loadavg_1m"] is not None)
    lines += [
        "",
        f"Dense baseline top-1: {100 * dense:.2f}%. Config: {json.dumps(run_cfg)}; compressions "
        f"{sorted({x['compression'] for x in rows})} ({len(rows)} runs); 1-minute load average after each "
        f"run: {loads}.",
        f"Machine: {json.dumps(machine)}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fresh", action="store_true", help="redo runs that already have a report")
    ap.add_argument("--report-only", action="store_true", help="summarise finished runs, start none")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--model", default="vgg16")
    ap.add_argument("--epochs", type=int, default=10, help="baseline epochs (shared, cached)")
    ap.add_argument(
        "--finetune-epochs", type=int, default=1, help="for the shrunk and the masked model alike"
    )
    ap.add_argument("--imp-epochs", type=int, default=1, help="training epochs per IMP cycle")
    args = ap.parse_args(argv)
    run_cfg = {
        **CONFIG,
        "model": args.model,
        "epochs": args.epochs,
        "finetune_epochs": args.finetune_epochs,
        "imp_epochs": args.imp_epochs,
    }
    folder = HERE / args.model
    from filterprune.benchmarking import machine

    rows = []
    t0 = time.perf_counter()
    for c in COMPRESSIONS:
        for method in args.methods.split(","):
            if args.report_only and not (folder / "runs" / f"{method}-c{c:g}" / "report.json").is_file():
                continue
            rows.append(row(run_one(method, c, args.fresh and not args.report_only, run_cfg, folder)))
            print(
                f"[bench] {method} c={c:g} done ({time.perf_counter() - t0:.0f}s)",
                file=sys.stderr,
                flush=True,
            )
    if not rows:
        print("no finished runs", file=sys.stderr)
        return 1
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    md = markdown(rows, machine.describe(), run_cfg)
    for name, text in (("results.csv", buf.getvalue()), ("results.md", md)):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, folder / name)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

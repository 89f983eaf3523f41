"""DDP finetuning vs one process: the same pruned network finetuned by ``filterprune compress`` in one process
and under ``torchrun --nproc_per_node N ... --distributed``, for several seeds, on the real CIFAR-10 subset.

    PYTHONPATH=$PWD python benchmarks/ddp_finetune.py                          # mlp, 5 seeds, 2 processes
    PYTHONPATH=$PWD python benchmarks/ddp_finetune.py --model resnet20 --seeds 3 --baseline-epochs 5
    ... --single-threads 1     # a loaded machine: one thread per process everywhere (the default gives the
                               # single process as many threads as DDP has processes: the same cores)

One baseline per model (a single-process ``filterprune train``) is the ``--checkpoint`` of every run, so
the runs differ only in how they finetune: the seed moves the data order and the augmentations, the mode
moves the launch. The seed spread of the single-process runs is the noise the DDP runs must fall inside
(``tests/test_distributed.py`` takes its tolerance from it). Timings: rank 0's finetune stage
(``timings_s.finetune`` in report.json) and the whole command's wall clock, with the load average.

Writes benchmarks/ddp/<model>/{results.csv,results.md,config.json}; run folders go to a temporary folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filterprune.reporting.schema import read_report  # cheap: no torch in this process

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks" / "ddp"
DATA_ROOT = ROOT.parent / "shared" / "data"


def run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


def compress_cmd(args, base: Path, seed: int, out: Path, finetune_epochs: int) -> list[str]:
    return [
        "-m",
        "filterprune",
        "compress",
        args.model,
        "--dataset",
        "cifar10",
        "--data-root",
        args.data_root,
        "--checkpoint",
        str(base),
        "--criterion",
        args.criterion,
        "--sparsity",
        str(args.sparsity),
        "--round-to",
        "1",  # exact counts: the committed numbers predate the default of 16
        "--finetune-epochs",
        str(finetune_epochs),
        "--finetune-lr",
        str(args.finetune_lr),
        "--batch-size",
        str(args.batch_size),
        "--seed",
        str(seed),
        "--no-export",
        "--no-bench",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def one(args, base: Path, seed: int, mode: str, work: Path, finetune_epochs: int) -> dict:
    out = work / f"{mode}-s{seed}-ft{finetune_epochs}"
    cmd = compress_cmd(args, base, seed, out, finetune_epochs)
    if mode == "single":
        wall = run([sys.executable, *cmd], args.single_threads)
    else:
        wall = run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                str(args.nproc),
                *cmd,
                "--distributed",
            ],
            1,
        )
    r = read_report(out)
    return {
        "model": args.model,
        "mode": mode,
        "processes": 1 if mode == "single" else args.nproc,
        "threads_per_process": args.single_threads if mode == "single" else 1,
        "seed": seed,
        "dense_top1": r["dense"]["accuracy"],
        "pruned_top1": r["pruned"]["accuracy"],
        "finetune_s": r["timings_s"]["finetune"],
        "wall_s": round(wall, 2),
        "loadavg_1m": os.getloadavg()[0],
    }


def spread(values: list[float], scale: float = 1.0, unit: str = "") -> str:
    v = [x * scale for x in values]
    return f"{statistics.median(v):.2f}{unit} [{min(v):.2f}, {max(v):.2f}]"


def markdown(rows: list[dict], no_ft: float, cfg: dict, machine: dict) -> str:
    single = [r for r in rows if r["mode"] == "single"]
    ddp = [r for r in rows if r["mode"] != "single"]
    pairs = [d["pruned_top1"] - s["pruned_top1"] for s, d in zip(single, ddp)]
    lines = [
        "| launch | runs | pruned top-1 %, median [min, max] | finetune stage s | whole command s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rs in (
        (f"1 process x {cfg['single_threads']} thread(s)", single),
        (f"torchrun {cfg['nproc']} processes x 1 thread (gloo)", ddp),
    ):
        lines.append(
            f"| {name} | {len(rs)} | {spread([r['pruned_top1'] for r in rs], 100)} | "
            f"{spread([r['finetune_s'] for r in rs])} | {spread([r['wall_s'] for r in rs])} |"
        )
    sd = statistics.stdev([r["pruned_top1"] for r in single]) * 100 if len(single) > 1 else float("nan")
    lines += [
        "",
        f"Dense baseline top-1 {100 * rows[0]['dense_top1']:.2f}%; pruned before finetuning "
        f"{100 * no_ft:.2f}%. Same seed, DDP minus single: median {100 * statistics.median(pairs):+.2f} "
        f"points, largest |difference| {100 * max(map(abs, pairs)):.2f}; seed-to-seed standard deviation "
        f"of the single-process runs {sd:.2f} points.",
        "Load average (1 min) after each run: " + ", ".join(f"{r['loadavg_1m']:.1f}" for r in rows) + ".",
        f"Config: {json.dumps(cfg)}.",
        f"Machine: {json.dumps(machine)}.",
    ]
    return "\n".join(lines) + "\n"


def write(folder: Path, name: str, text: str) -> None:
    tmp = folder / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, folder / name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--criterion", default="l1")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument(
        "--single-threads", type=int, default=None, help="threads of the single process (default --nproc)"
    )
    ap.add_argument("--baseline-epochs", type=int, default=4)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--finetune-lr", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch, split among the DDP processes")
    ap.add_argument("--data-root", default=str(DATA_ROOT))
    args = ap.parse_args(argv)
    args.single_threads = args.single_threads or args.nproc
    from filterprune.benchmarking import machine

    cfg = dict(vars(args))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ddp-bench-") as tmp:
        work = Path(tmp)
        base = work / "baseline"
        run(
            [
                sys.executable,
                "-m",
                "filterprune",
                "train",
                args.model,
                "--dataset",
                "cifar10",
                "--data-root",
                args.data_root,
                "--epochs",
                str(args.baseline_epochs),
                "--batch-size",
                str(args.batch_size),
                "--device",
                "cpu",
                "--out",
                str(base),
            ],
            args.single_threads,
        )
        no_ft = one(args, base, 0, "single", work, 0)["pruned_top1"]
        rows = []
        for seed in range(args.seeds):
            for mode in ("single", "ddp"):
                rows.append(one(args, base, seed, mode, work, args.finetune_epochs))
                print(
                    f"[bench] seed {seed} {mode}: top-1 {100 * rows[-1]['pruned_top1']:.2f}%, finetune "
                    f"{rows[-1]['finetune_s']:.1f}s ({time.perf_counter() - t0:.0f}s)",
                    file=sys.stderr,
                    flush=True,
                )
    cfg["wall_s"] = round(time.perf_counter() - t0, 1)
    folder = HERE / args.model
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    md = markdown(rows, no_ft, cfg, machine.describe())
    write(folder, "results.csv", buf.getvalue())
    write(folder, "results.md", md)
    write(folder, "config.json", json.dumps({**cfg, "pruned_top1_before_finetune": no_ft}, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kill a sweep with SIGKILL mid-way, resume it, and prove that no finished run was redone or lost.

    PYTHONPATH=$PWD python benchmarks/sweep_smoke.py [--config configs/smoke-grid.yaml] [--kill-after 6]

1. ``filterprune sweep CONFIG --out benchmarks/sweep_smoke/sweep`` starts (a fresh folder);
2. once ``--kill-after`` runs are finished and the next one has run for ``--kill-delay`` seconds, the
   sweep process (only it) gets SIGKILL; its run's worker must die with it;
3. digests and mtimes of every file in every finished run folder are taken;
4. ``filterprune sweep CONFIG --resume`` finishes the sweep;
5. checks: every run finished before the kill is byte-identical with unchanged mtimes and was attempted
   once; the killed run was attempted twice and is complete; nothing hidden is left in runs/;
   results.csv has one row per run.

Writes benchmarks/sweep_smoke/{log.txt,result.json} and leaves the sweep folder in
benchmarks/sweep_smoke/sweep/ (``filterprune report`` reads it). Exit 1 if a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks" / "sweep_smoke"


def digests(run_dir: Path) -> dict:
    return {
        p.name: [hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns]
        for p in sorted(run_dir.iterdir())
        if p.is_file()
    }


def finished(runs: Path) -> dict:
    return {
        p.name: digests(p)
        for p in sorted(runs.iterdir())
        if not p.name.startswith(".") and (p / "report.json").is_file()
    }


def attempts(log: Path) -> int:
    return sum(line.startswith("=== ") for line in log.read_text().splitlines()) if log.is_file() else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/smoke-grid.yaml")
    ap.add_argument("--data-root", default="../shared/data", help="where the config's dataset is")
    ap.add_argument("--kill-after", type=int, default=6, help="finished runs before the kill")
    ap.add_argument("--kill-delay", type=float, default=15.0, help="seconds into the next run")
    args = ap.parse_args()
    os.chdir(ROOT)
    out = HERE / "sweep"
    shutil.rmtree(out, ignore_errors=True)
    HERE.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def note(msg: str) -> None:
        msg = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(msg, flush=True)
        lines.append(msg)

    from filterprune.benchmarking.machine import describe

    note(f"machine: {json.dumps(describe())}")
    note(f"load average at start: {os.getloadavg()}")
    cmd = [
        sys.executable,
        "-m",
        "filterprune",
        "sweep",
        args.config,
        "--out",
        str(out),
        "--set",
        f"data_root={args.data_root}",
    ]
    note(f"$ {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    first_out = (HERE / ".first.out").open("w+")
    first = subprocess.Popen(cmd, stdout=first_out, stderr=subprocess.STDOUT, text=True)
    in_flight, since = None, None
    while first.poll() is None:
        time.sleep(1)
        runs = out / "runs"
        done = {p.parent.name for p in runs.glob("*/report.json")} if runs.is_dir() else set()
        if len(done) >= args.kill_after:
            logs = sorted((out / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)
            current = next((p.stem for p in reversed(logs) if p.stem not in done), None)
            if current and current != in_flight:
                in_flight, since = current, time.perf_counter()
            if in_flight and time.perf_counter() - since >= args.kill_delay:
                workers = [c.pid for c in psutil.Process(first.pid).children(recursive=True)]
                staging = [p.name for p in runs.iterdir() if p.name.startswith(".")]
                first.send_signal(signal.SIGKILL)
                first.wait()
                note(
                    f"SIGKILL to the sweep (pid {first.pid}) {time.perf_counter() - t0:.0f}s in, {len(done)} runs "
                    f"finished, run {in_flight} {time.perf_counter() - since:.0f}s in; its worker(s) {workers}; "
                    f"staging folders then: {staging or 'none'}"
                )
                break
    first_out.seek(0)
    lines += ["  | " + ln.rstrip() for ln in first_out.read().splitlines()]
    first_out.close()
    (HERE / ".first.out").unlink()
    if in_flight is None:
        note("the sweep ended before the kill point: lower --kill-after")
        return 1
    deadline = time.time() + 20
    while (
        any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in workers)
        and time.time() < deadline
    ):
        time.sleep(0.5)
    orphans = [
        p for p in workers if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
    ]
    note(f"workers still alive 20s after the kill: {orphans or 'none'}")
    before = finished(out / "runs")
    left = [p.name for p in (out / "runs").iterdir() if p.name.startswith(".")]
    note(f"after the kill: {len(before)} finished runs; hidden leftovers in runs/: {left or 'none'}")

    note(f"load average before resume: {os.getloadavg()}")
    cmd = [
        sys.executable,
        "-m",
        "filterprune",
        "sweep",
        args.config,
        "--out",
        str(out),
        "--resume",
        "--set",
        f"data_root={args.data_root}",
    ]
    note(f"$ {' '.join(cmd[1:])}")
    t1 = time.perf_counter()
    second = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines += ["  | " + ln for ln in second.stdout.splitlines()]
    note(f"resume exit {second.returncode} after {time.perf_counter() - t1:.0f}s")
    after = finished(out / "runs")
    sweep = json.loads((out / "sweep.json").read_text())
    ids = [r["run_id"] for r in sweep["config"]["runs"]]
    rows = (out / "results.csv").read_text().splitlines()[1:]
    checks = {
        "resume exit 0": second.returncode == 0,
        "resume skipped exactly the runs finished before the kill": f"{len(before)} already finished, {len(ids) - len(before)} to run"
        in second.stdout,
        "every run finished": sorted(after) == sorted(ids),
        "runs finished before the kill unchanged (sha256 and mtime of every file)": all(
            after[k] == v for k, v in before.items()
        ),
        "runs finished before the kill attempted once": all(
            attempts(out / "logs" / f"{k}.log") == 1 for k in before
        ),
        "the killed run attempted twice": attempts(out / "logs" / f"{in_flight}.log") == 2,
        "the killed run is complete": in_flight in after,
        "its worker died with the sweep": not orphans,
        "nothing hidden left in runs/": not [p for p in (out / "runs").iterdir() if p.name.startswith(".")],
        "results.csv has one row per run": len(rows) == len(ids),
    }
    for name, ok in checks.items():
        note(f"{'PASS' if ok else 'FAIL'}  {name}")
    note(f"load average at end: {os.getloadavg()}")
    result = {
        "config": args.config,
        "runs": len(ids),
        "finished_before_kill": sorted(before),
        "killed_run": in_flight,
        "checks": checks,
        "wall_s": round(time.perf_counter() - t0, 1),
        "machine": describe(),
        "command": "PYTHONPATH=$PWD python benchmarks/sweep_smoke.py",
    }
    (HERE / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (HERE / "log.txt").write_text("\n".join(lines) + "\n")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Call-by-call alternation (``latency.interleaved``, the bench stage's) vs turns of 5 calls after one
untimed call, on one run folder's dense and pruned ONNX files: onnxruntime CPU fp32, batch 1, 2 threads,
three repetitions of 50 calls per variant.

    PYTHONPATH=$PWD python benchmarks/speedup/bench_turns.py RUN_DIR [--side 256]

Run alone. The question: does each call pay for the other model's caches when they alternate? On
YOLOv8n at 256 px no consistent difference (BENCHMARKS.md, detection), so the bench stage alternates."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from filterprune.benchmarking.latency import interleaved  # noqa: E402 - call by call
from filterprune.benchmarking.runners import ort_session  # noqa: E402


def turns(runs: dict, iters: int = 50, turn: int = 5) -> dict[str, list[float]]:
    """Each variant in turns of ``turn`` timed calls, each turn after one untimed call."""
    t: dict[str, list[float]] = {k: [] for k in runs}
    while any(len(v) < iters for v in t.values()):
        for k, run in runs.items():
            run()
            for _ in range(min(turn, iters - len(t[k]))):
                t0 = time.perf_counter()
                run()
                t[k].append(1e3 * (time.perf_counter() - t0))
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--side", type=int, default=256)
    a = p.parse_args()
    x = np.random.default_rng(0).random((1, 3, a.side, a.side), dtype=np.float32)
    sessions = {
        k: ort_session(a.run_dir / f, "cpu", 2)
        for k, f in (("dense", "dense.onnx"), ("pruned", "model.onnx"))
    }
    runs = {k: (lambda s=s: s.run(None, {s.get_inputs()[0].name: x})) for k, s in sessions.items()}
    for run in runs.values():
        for _ in range(5):
            run()
    print(f"load average before: {os.getloadavg()}")
    for rep in range(3):
        for name, t in (("alternation", interleaved(runs, 0, 50)), ("turns", turns(runs))):
            d, q = statistics.median(t["dense"]), statistics.median(t["pruned"])
            print(f"{rep} {name}: dense {d:.2f} ms, pruned {q:.2f} ms, speedup {d / q:.3f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Interleaved timing: variants take turns (A's calls, B's calls, A's ...) in one process, after warm-up,
so drift in machine load hits every variant alike. Callers pass random inputs (never zeros: some kernels
shortcut on zeros) and summarise with medians and percentiles (bench/timing.py).

Each turn begins with one untimed call: the first call after another variant ran pays for that variant's
data in the caches and for waking idle worker threads, which a model deployed alone does not. Timed in
strict alternation, one call per turn, YOLOv8n at batch 1 (256 px, onnxruntime, 2 threads) ran about 2 ms
slower per call in both variants than in runs of calls (dense 12.3 vs 10.2 ms), and its speedup read 1.47x
where runs of calls measured 1.56x."""

from __future__ import annotations

import time
from collections.abc import Callable

TURN = 5  # timed calls per turn


def interleaved(runners: dict[str, Callable[[], None]], warmup: int, iters: int) -> dict[str, list[float]]:
    """Milliseconds of ``iters`` calls for each runner, in turns of up to TURN timed calls each."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    while any(len(t) < iters for t in times.values()):
        for name, run in runners.items():
            n = min(TURN, iters - len(times[name]))
            if n <= 0:
                continue
            run()  # untimed: warms what the other variants' turns evicted
            for _ in range(n):
                t0 = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times

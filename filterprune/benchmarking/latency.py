"""Interleaved timing: variants are called in alternation (A B A B ...) in one process, after warm-up,
so drift in machine load hits every variant alike. Callers pass random inputs (never zeros: some
kernels shortcut on zeros) and summarise with medians and percentiles (bench/timing.py)."""

from __future__ import annotations

import time
from collections.abc import Callable


def interleaved(runners: dict[str, Callable[[], None]], warmup: int, iters: int) -> dict[str, list[float]]:
    """Milliseconds per call for each runner, measured in alternation."""
    for _ in range(warmup):
        for run in runners.values():
            run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(iters):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return times

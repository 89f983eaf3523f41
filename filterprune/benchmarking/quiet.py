"""Is the machine quiet enough to time on? Timings a busy machine cannot fool.

On a shared 2-core machine another process using one core made torch's two OpenMP threads wait on each
other: a pruned VGG16 with 2.57x fewer MACs timed 1.00x its dense model while onnxruntime beside it
measured 2.33x. So every benchmark samples the CPU time that *other* processes use (all of the machine
minus this process and its children) before and during the timing, and the spread of its own samples;
a busy machine is said in ``bench.md``, ``report.md`` and the ``machine_busy`` column of ``bench.csv``,
and thread counts are chosen so as not to oversubscribe the cores that are free.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import psutil

BUSY_CORES = 0.3  # other processes using more than this many cores' worth of CPU: not quiet
SPREAD = 0.5  # (p90 - p50) / p50 of a row's samples above this: not quiet
INTERVAL_S = 0.25


def _own_cpu_seconds(me: psutil.Process) -> float:
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def _machine_cpu_seconds() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def other_load(seconds: float = 0.5) -> float:
    """Cores' worth of CPU used by other processes over ``seconds`` (0 on an idle machine)."""
    me = psutil.Process()
    m0, o0, t0 = _machine_cpu_seconds(), _own_cpu_seconds(me), time.monotonic()
    time.sleep(seconds)
    m1, o1, t1 = _machine_cpu_seconds(), _own_cpu_seconds(me), time.monotonic()
    return max(0.0, ((m1 - m0) - (o1 - o0)) / max(t1 - t0, 1e-6))


def free_threads(requested: int) -> int:
    """Threads that fit the cores other processes leave free (at least 1, at most ``requested``)."""
    free = cores() - other_load(0.3)
    return max(1, min(requested, int(free + 0.5)))


@dataclass
class Watch:
    """Samples other processes' CPU use in a background thread while a benchmark runs."""

    samples: list[float] = field(default_factory=list)
    before: float = 0.0

    def __enter__(self) -> Watch:
        self.before = other_load(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        me = psutil.Process()
        m, o, t = _machine_cpu_seconds(), _own_cpu_seconds(me), time.monotonic()
        while not self._stop.wait(INTERVAL_S):
            m1, o1, t1 = _machine_cpu_seconds(), _own_cpu_seconds(me), time.monotonic()
            self.samples.append(max(0.0, ((m1 - m) - (o1 - o)) / max(t1 - t, 1e-6)))
            m, o, t = m1, o1, t1

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def during(self) -> float:
        """Mean cores' worth of CPU that other processes used while timing."""
        return sum(self.samples) / len(self.samples) if self.samples else self.before

    def verdict(self, spreads: list[float] | None = None) -> dict:
        """``busy`` and why: other processes' load before/during, and the worst timing spread."""
        worst = max(spreads or [0.0])
        reasons = []
        if max(self.before, self.during) > BUSY_CORES:
            reasons.append(f"other processes used {max(self.before, self.during):.2f} of {cores()} cores")
        if worst > SPREAD:
            reasons.append(f"timing spread (p90-p50)/p50 up to {worst:.2f}")
        return {
            "busy": bool(reasons),
            "why": "; ".join(reasons),
            "other_load_before": round(self.before, 3),
            "other_load_during": round(self.during, 3),
            "cores": cores(),
            "worst_spread": round(worst, 3),
        }


def warning(verdict: dict) -> str:
    """The line bench.md and report.md carry when the machine was not quiet ('' when it was)."""
    if not verdict or not verdict.get("busy"):
        return ""
    return (
        f"**Warning: the machine was not quiet while timing** ({verdict['why']}); latencies and speedups "
        "may be wrong (rerun alone: one timing job at a time)."
    )

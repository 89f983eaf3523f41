"""Latency-targeted allocation (``--target-speedup X`` / ``--target-latency MS``), after HALP (Shen et
al., NeurIPS 2022): keep as much of the criterion's importance as possible subject to a *measured*
latency on the user's runtime, instead of a per-layer sparsity.

1. **Latency model**: every conv's latency alone on the target runtime, at the target batch, as a
   function of its input *and* output widths, measured on a grid of widths per distinct conv shape and
   interpolated bilinearly in between (cached on disk with ``--round-to auto``'s table). The model's
   latency is modelled as the sum over its convs.
2. **Solver**: from the dense widths, repeatedly take the cut (one group down to a lower candidate
   width: multiples of 8, or any count in narrow layers) that saves the most modelled milliseconds per
   unit of importance lost, until the modelled latency fits the budget; floors (``--layer-floor``) hold.
   Importance is the criterion's per-channel score as a share of its group's total, times the share of
   the model's MACs the group carries (every conv it feeds or is fed by): removing half of any group
   costs half of what it carries, so no stage is thinned to its floor just because its channels are
   cheap; a conv's latency is felt by both groups that set its widths.
3. **Measure and iterate**: the candidate network is built and timed against the dense one on the
   target (interleaved, median); the budget is corrected by the measured/target ratio (bounded by
   bisection) until the measured speedup is at the target or up to ``TOLERANCE`` above it; otherwise the
   best plan tried is kept (one that reached the target first, else one within ``TOLERANCE`` below). A
   target the floors cannot reach is refused with the best reachable figure.
"""
from __future__ import annotations

import io
import logging
import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import UsageError
from .align import ConvSite, LatencyTable, conv_sites

log = logging.getLogger("filterprune")

RUNTIMES = ("onnxruntime", "openvino", "torch", "torch:cuda")
STEP = 8
GRID = (1.0, 0.75, 0.5, 0.3, 0.15)  # fractions of a conv's widths measured for the latency model
LOOKAHEAD = 2  # a cut goes to one of the next two lower candidate widths (past a slow width, not further)
TOLERANCE = 0.05  # measured speedup within ±5% of the target ends the search
ITERATIONS = 6
ROUNDS = 7  # interleaved rounds of the whole-model timing


# ------------------------------------------------------------------------------------ latency model
class ConvLatency:
    """Modelled latency (ms) of one conv at any (in, out) width: bilinear in a measured width grid."""

    def __init__(self, site: ConvSite, table: LatencyTable):
        self.site, self.table = site, table
        m = site.module
        cin_full = m.out_channels if site.depthwise else m.in_channels
        self.cins = _grid(cin_full, site.in_group is not None and not site.depthwise)
        self.couts = _grid(m.out_channels, site.out_group is not None)

    def __call__(self, cin: int, cout: int) -> float:
        if self.site.depthwise:
            return _interp(self.couts, cout, lambda c: self.table(self.site, c, c))
        return _interp(self.cins, cin, lambda a: _interp(self.couts, cout, lambda b: self.table(self.site, a, b)))


def _grid(channels: int, movable: bool) -> list[int]:
    if not movable:
        return [channels]
    return sorted({max(1, round(f * channels)) for f in GRID} | {channels})


def _interp(points: list[int], x: int, f: Callable[[int], float]) -> float:
    if len(points) == 1 or x >= points[-1]:
        return f(points[-1]) * (x / points[-1] if len(points) > 1 else 1.0)
    if x <= points[0]:
        return f(points[0]) * max(x, 1) / points[0]
    i = next(i for i, p in enumerate(points) if p >= x)
    lo, hi = points[i - 1], points[i]
    w = (x - lo) / (hi - lo)
    return (1 - w) * f(lo) + w * f(hi)


class ModelLatency:
    """Sum of modelled conv latencies for per-group channel counts ``keep``."""

    def __init__(self, sites: list[ConvSite], table: LatencyTable, n_groups: int):
        self.sites, self.convs = sites, [ConvLatency(s, table) for s in sites]
        self.touching = [[i for i, s in enumerate(sites) if g in (s.in_group, s.out_group)] for g in range(n_groups)]

    def site_ms(self, keep: list[int], i: int) -> float:
        return self.convs[i](*self.sites[i].widths(keep))

    def total(self, keep: list[int]) -> float:
        return sum(self.site_ms(keep, i) for i in range(len(self.sites)))


# ------------------------------------------------------------------------------------------ solver
def candidates(channels: int, floor: int, ch_groups: int) -> list[int]:
    """Channel counts a group may keep: multiples of STEP (any count in layers narrower than 2 x STEP), the
    full width. CPU runtimes block channels by 8 or 16 (onnxruntime's NCHWc, OpenVINO's blocked layouts):
    an unaligned width between aligned ones adds layout reorders that no single-conv timing shows
    (resnet56's 16-wide stage cut to 10 ran at 1.0x with 2.6x fewer MACs)."""
    step = STEP if channels >= 2 * STEP else 1
    return sorted({c for c in range(step, channels + 1, step) if c >= floor and c % ch_groups == 0} | {channels})


def solve(scores: list[torch.Tensor], channels: list[int], floors: list[int], ch_groups: list[int],
          latency: ModelLatency, budget_ms: float, start: list[int] | None = None) -> list[int]:
    """Channels kept per group: greedy cuts with the best modelled ms saved per importance lost until the
    modelled latency is within ``budget_ms`` (or nothing can be cut). ``start``: continue from there."""
    # a group's importance mass is the share of the model's MACs it carries, spread over its channels by
    # the criterion's scores: a residual group read by every conv of a stage weighs what it carries
    mass = [sum(latency.sites[i].macs(channels) for i in latency.touching[g]) for g in range(len(channels))]
    norm = [m * s.float().clamp_min(0) / max(float(s.float().clamp_min(0).sum()), 1e-12)
            for m, s in zip(mass, scores)]
    lost = [torch.cat([torch.zeros(1), torch.sort(n).values.cumsum(0)]) for n in norm]  # per unit removed
    cands = [candidates(c, f, g) for c, f, g in zip(channels, floors, ch_groups)]
    cur = list(start or channels)
    site_ms = [latency.site_ms(cur, i) for i in range(len(latency.sites))]
    total = sum(site_ms)

    def loss(g, c):
        return float(lost[g][(channels[g] - c) // ch_groups[g]])

    while total > budget_ms:
        best, best_ratio = None, 0.0
        for g, cs in enumerate(cands):
            if not latency.touching[g]:
                continue  # no conv of this group is modelled: cutting it saves nothing measurable
            for c in [c for c in cs if c < cur[g]][-LOOKAHEAD:]:  # the next lower widths only: small cuts
                trial = list(cur)
                trial[g] = c
                saved = sum(site_ms[i] - latency.site_ms(trial, i) for i in latency.touching[g])
                if saved <= 0:
                    continue
                ratio = saved / (loss(g, c) - loss(g, cur[g]) + 1e-6)
                if ratio > best_ratio:
                    best, best_ratio = (g, c), ratio
        if best is None:
            break
        g, c = best
        cur[g] = c
        for i in latency.touching[g]:
            new = latency.site_ms(cur, i)
            total += new - site_ms[i]
            site_ms[i] = new
    return cur


# --------------------------------------------------------------------------------- measured timing
def runner(model: nn.Module, x: torch.Tensor, runtime: str, threads: int | None) -> Callable[[], None]:
    """One inference of ``model`` on ``x`` in the target runtime (the ONNX runtimes from an in-memory export)."""
    model = model.eval()
    if runtime.startswith("torch"):
        from ..bench.runners import torch_runner

        return torch_runner(model, x, torch.device("cuda" if runtime == "torch:cuda" else "cpu"))
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (x[:1],), buf, dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", prefix=".fp-latency-")
    try:
        os.write(fd, buf.getvalue())
        os.close(fd)
        from ..bench.runners import ort_session, ov_runner

        if runtime == "openvino":
            return ov_runner(Path(tmp), x, threads)

        sess = ort_session(Path(tmp), "cpu", threads or torch.get_num_threads())
        feed = {"x": x.numpy()}
        return lambda: sess.run(None, feed)
    finally:
        Path(tmp).unlink(missing_ok=True)


def interleaved_samples(runs: dict[str, Callable[[], None]], rounds: int = ROUNDS,
                        min_s: float = 0.05) -> dict[str, list[float]]:
    """ms per call of each runner, one sample per round (each at least ``min_s`` of calls), the runners
    interleaved A B A B ... after a warm-up, so drift and background load hit them alike."""
    for run in runs.values():
        run(), run()
    samples = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < min_s:
                run()
                n += 1
            samples[k].append(1e3 * (time.perf_counter() - t0) / n)
    return samples


def measure_ms(models: dict[str, nn.Module], x: torch.Tensor, runtime: str, threads: int | None,
               rounds: int = ROUNDS) -> dict[str, float]:
    """Median ms per call of each model on ``runtime``, interleaved."""
    samples = interleaved_samples({k: runner(m, x, runtime, threads) for k, m in models.items()}, rounds)
    return {k: statistics.median(v) for k, v in samples.items()}


# ------------------------------------------------------------------------------------------- search
def _better(row: dict, best: dict, target: float) -> bool:
    """A plan that reaches the target beats one within tolerance below it; among equals the loosest
    budget keeps the most importance."""
    reached, best_reached = row["speedup"] >= target, best["speedup"] >= target
    if reached != best_reached:
        return reached
    return row["budget_fraction"] > best["budget_fraction"]


def target_plan(model: nn.Module, ctx, plan, groups, scores: list[torch.Tensor], totals: list[int],
                build: Callable[[list[int]], nn.Module]) -> tuple[list[int], dict]:
    """Units kept per group for ``plan.target_speedup`` / ``plan.target_latency``, and the search record.

    ``build(keep_units)`` returns the network pruned to those counts (a copy), to be timed."""
    x = torch.randn(plan.target_batch, *ctx.example_inputs.shape[1:])
    table = LatencyTable(plan.target_runtime, plan.target_batch, plan.threads)
    if plan.target_runtime == "openvino":
        from ..bench.runners import openvino_core

        openvino_core()  # fail now, with the install hint, not after measuring
    sites = conv_sites(model, ctx.example_inputs, groups)
    latency = ModelLatency(sites, table, len(groups))
    channels = [cg.channels for cg in groups]
    ch_groups = [cg.ch_groups for cg in groups]
    floors = [max(cg.ch_groups, math.ceil(plan.layer_floor * t * cg.ch_groups - 1e-9)) for cg, t in zip(groups, totals)]
    modelled_dense = latency.total(channels)
    floor_keep = solve(scores, channels, floors, ch_groups, latency, 0.0)
    dense_ms = measure_ms({"dense": model}, x, plan.target_runtime, plan.threads)["dense"]
    target = plan.target_speedup or dense_ms / plan.target_latency
    if target <= 1:
        raise UsageError(f"--target-latency {plan.target_latency:g} ms is not below the dense model's "
                         f"{dense_ms:.3g} ms on {plan.target_runtime} at batch {plan.target_batch}")
    units = lambda keep: [k // g for k, g in zip(keep, ch_groups)]  # noqa: E731
    tried: list[dict] = []

    def attempt(fraction: float) -> dict:
        keep = solve(scores, channels, floors, ch_groups, latency, fraction * modelled_dense)
        ms = measure_ms({"dense": model, "pruned": build(units(keep))}, x, plan.target_runtime, plan.threads)
        row = {"budget_fraction": fraction, "modelled_ms": latency.total(keep), "dense_ms": ms["dense"],
               "pruned_ms": ms["pruned"], "speedup": ms["dense"] / ms["pruned"], "keep": keep}
        tried.append(row)
        log.info("target-speedup: budget %.3f of modelled dense -> measured %.2fx (target %.2fx)",
                 fraction, row["speedup"], target)
        return row

    lo, hi = 0.0, 1.0  # the budget fraction lies between (lo too tight / unknown, hi too loose)
    f = 1 / target
    best = None
    for _ in range(ITERATIONS):
        row = attempt(f)
        ok = row["speedup"] >= target * (1 - TOLERANCE)
        if ok and (best is None or _better(row, best, target)):
            best = row
        if target <= row["speedup"] <= target * (1 + TOLERANCE):
            break  # at or just above the target: delivered, and little importance given away
        if row["speedup"] < target:
            hi = f
            if row["keep"] == floor_keep:
                break  # the floors: no budget goes further
        else:
            lo = f
        nxt = f * row["speedup"] / target  # latency ~ budget: scale the budget by the miss
        f = nxt if lo < nxt < hi else (lo + hi) / 2
    if best is None:
        reach = max(r["speedup"] for r in tried)
        if tried[-1]["keep"] != floor_keep:  # the floors themselves, measured like every candidate
            ms = measure_ms({"dense": model, "pruned": build(units(floor_keep))}, x, plan.target_runtime, plan.threads)
            reach = max(reach, ms["dense"] / ms["pruned"])
        raise UsageError(f"a measured speedup of {target:.2f}x on {plan.target_runtime} at batch {plan.target_batch} "
                         f"is out of reach: the best the layer floors allow is {reach:.2f}x (lower the target or "
                         f"--layer-floor)")
    table.save()
    record = {"asked_speedup": target, "asked_latency_ms": plan.target_latency, "runtime": plan.target_runtime,
              "batch": plan.target_batch, "threads": plan.threads or torch.get_num_threads(),
              "dense_ms": best["dense_ms"], "pruned_ms": best["pruned_ms"], "measured_speedup": best["speedup"],
              "modelled_dense_ms": modelled_dense, "modelled_pruned_ms": best["modelled_ms"],
              "conv_latencies_measured": table.measured,
              "iterations": [{k: v for k, v in r.items() if k != "keep"} for r in tried],
              "widths": {cg.root_name: k for cg, k in zip(groups, best["keep"])}}
    return units(best["keep"]), record



"""Hardware-aware channel counts (``--round-to auto``): alignment and allocation chosen together, from
measurement on the target runtime rather than folklore ("multiples of 8").

Kernels are fast at some widths and slow at others (SIMD blocks, filter-set tiling, memory-bound
layers), so the same MAC cut buys different latency at different widths. Here every conv's latency is
measured alone, in the target runtime at the target batch, for the widths the plan may choose (a
latency lookup table, cached on disk per machine and library versions, OpenVINO's too for its tables;
an entry's key names the conv's shape, the batch, the runtime and the precision). Then each group's
kept count is chosen among multiples of ``STEP`` within ``BAND`` of the requested keep fraction, by a
local search that maximises MACs per millisecond (the speedup efficiency) while removing at least the
MACs the plain layerwise plan removes. Model latency is modelled as the sum of conv latencies. A table
for another precision than fp32 (``--target-precision int8``) times each conv as deployed at it (its
INT8 QDQ file) and keeps its entries under their own keys.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from .. import limits
from ..benchmarking import kernels
from ..benchmarking.machine import describe, openvino_version
from ..benchmarking.runners import torch_runner
from ..errors import RunError, UsageError
from ..fileio import atomic_write_json, cache_dir, read_small_json
from ..log import say
from ..tracing import layer_macs, profile

STEP = 8  # candidate widths are multiples of this
BAND = 0.1  # kept fraction may move this far from 1 - sparsity
ROUNDS = 200  # local-search rounds (each takes the best improving move)
RUNS = 7  # per measurement; the minimum is kept (robust to background load)


@dataclass
class ConvSite:
    """A conv layer, its input/output spatial size, and which groups set its widths (None: fixed)."""

    module: nn.Conv2d
    hw_in: tuple[int, int]
    hw_out: tuple[int, int]
    in_group: int | None
    out_group: int | None
    depthwise: bool

    def widths(self, keep: list[int]) -> tuple[int, int]:
        """(in, out) channels when each group g keeps ``keep[g]`` channels."""
        cin = self.module.in_channels if self.in_group is None else keep[self.in_group]
        cout = self.module.out_channels if self.out_group is None else keep[self.out_group]
        return (cout, cout) if self.depthwise else (cin, cout)

    def macs(self, keep: list[int]) -> int:
        return layer_macs(self.module, self.hw_out[0] * self.hw_out[1], *self.widths(keep))

    def key(self, cin: int, cout: int, batch: int, runtime: str) -> str:
        m = self.module
        return json.dumps(
            [
                runtime,
                batch,
                cin,
                cout,
                list(m.kernel_size),
                list(m.stride),
                list(m.padding),
                list(m.dilation),
                "dw" if self.depthwise else m.groups,
                list(self.hw_in),
            ]
        )


def _hw(shape: tuple | None) -> tuple:
    """The spatial size (H, W) of a conv's input or output shape."""
    assert shape is not None  # a conv's input and output are tensors, so profile recorded their shapes
    return shape[-2:]


def conv_sites(model: nn.Module, example_inputs: torch.Tensor, groups) -> list[ConvSite]:
    """2-D convs with their spatial sizes and the prunable groups that set their widths."""
    calls = profile(model, example_inputs).calls
    shapes = {
        m: (tuple(c[-1].inp or ())[-2:], tuple(c[-1].out or ())[-2:])
        for m, c in calls.items()
        if isinstance(m, nn.Conv2d)
    }
    out_of: dict[nn.Module, int] = {}
    in_of: dict[nn.Module, int] = {}
    for gi, cg in enumerate(groups):
        for dep, _ in cg.group:
            name = dep.handler.__name__
            (out_of if name == "prune_out_channels" else in_of).setdefault(dep.target.module, gi)
    sites = []
    for m, (hw_in, hw_out) in shapes.items():
        dw = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        if m.groups > 1 and not dw:
            continue  # grouped convs keep their plan (widths move in block multiples)
        sites.append(ConvSite(m, hw_in, hw_out, in_of.get(m), out_of.get(m), dw))
    return sites


PROGRESS_EVERY = 25  # a progress line per this many conv timings


def _pair(v: tuple[int, ...]) -> tuple[int, int]:
    """A 2-D conv's (h, w) setting, as torch's type stubs want it."""
    return (v[0], v[1])


class LatencyTable:
    """Measured single-conv latencies (ms), cached on disk per machine and runtime."""

    def __init__(
        self,
        runtime: str = "onnxruntime",
        batch: int = 64,
        threads: int | None = None,
        precision: str = "fp32",
    ):
        self.runtime, self.batch, self.precision = runtime, batch, precision
        # the key's runtime: fp32 entries keep the key they always had, others name their precision
        self.label = runtime if precision == "fp32" else f"{runtime}/{precision}"
        self.threads = threads or torch.get_num_threads()
        info = describe()
        machine = [info["cpu"], info["cores"], self.threads, info["torch"], info["onnxruntime"], info["gpu"]]
        if runtime == "openvino":  # its kernels change with its version; other tables keep their file
            machine.append(f"openvino {openvino_version()}")
        ident = json.dumps(machine)
        self.path = cache_dir() / "latency-lut" / f"{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"
        self.table: dict[str, float] = self._load()
        self.measured = 0

    @property
    def kernels(self) -> str:
        """The runtime and, when not fp32, the precision its convs are timed at (as messages name them)."""
        return self.runtime + ("" if self.precision == "fp32" else f" {self.precision}")

    def _load(self) -> dict[str, float]:
        """The cached table; a damaged one is dropped (it is only a cache: entries are measured again)."""
        if not self.path.is_file():
            return {}
        try:
            table = read_small_json(self.path, "latency table")
        except RunError:
            return {}
        ok = isinstance(table, dict) and all(isinstance(v, (int, float)) for v in table.values())
        return table if ok else {}

    def __call__(self, site: ConvSite, cin: int, cout: int) -> float:
        key = site.key(cin, cout, self.batch, self.label)
        if key not in self.table:
            if self.measured == 0:
                self._started = time.perf_counter()
                say(
                    f"latency table: timing single convs on {self.kernels} at batch {self.batch}, "
                    f"{self.threads} thread(s) ({len(self.table)} cached in {self.path.parent})"
                )
            self.table[key] = self._measure(site, cin, cout)
            self.measured += 1
            if self.measured % PROGRESS_EVERY == 0:  # a long table is not silence
                say(
                    f"latency table: {self.measured} convs timed "
                    f"({time.perf_counter() - self._started:.0f} s)"
                )
        return self.table[key]

    def _measure(self, site: ConvSite, cin: int, cout: int) -> float:
        m = site.module
        conv = nn.Conv2d(  # torch types a Conv2d's sizes as _ConvNd's tuple[int, ...]; they are pairs
            cin,
            cout,
            _pair(m.kernel_size),
            _pair(m.stride),
            m.padding if isinstance(m.padding, str) else _pair(m.padding),
            _pair(m.dilation),
            groups=cout if site.depthwise else 1,
            bias=True,
        ).eval()
        layer = nn.Sequential(conv, nn.ReLU())
        too_big = limits.over_budget(max(cin, cout) * math.prod(site.hw_in), self.batch)
        if too_big:
            raise UsageError(f"--target-batch {self.batch}: {too_big}")
        x = torch.randn(self.batch, cin, *site.hw_in)
        if self.runtime in kernels.ONNX_RUNTIMES:  # the layer as deployed: exported, quantized for int8
            run = kernels.runner(layer, x, self.runtime, self.threads, self.precision)
        else:
            run = torch_runner(
                layer, x, torch.device(self.runtime.split(":")[1] if ":" in self.runtime else "cpu")
            )
        run()
        best = math.inf
        for _ in range(RUNS):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        return best * 1e3

    def save(self) -> None:
        if self.measured:
            atomic_write_json(self.path, self.table)


def no_convs() -> UsageError:
    return UsageError(
        "round_to 'auto' chooses the widths of conv layers from their measured latencies, and this "
        "model has no 2-D conv layer whose width it can choose: give round_to an integer (e.g. 1)",
        ("round_to",),
    )


def check_auto(model: nn.Module, round_to) -> None:
    """Before any training: ``round_to='auto'`` needs a conv layer to measure."""
    if round_to == "auto" and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise no_convs()


def candidates(channels: int, keep: int, floor: int) -> list[int]:
    """Multiples of STEP within BAND (as a fraction of the layer, but at least one STEP) of the planned
    keep count, so a narrow layer can still reach the aligned widths on either side of its plan."""
    band = max(BAND * channels, STEP)
    lo = max(floor, math.floor(keep - band))
    hi = min(channels, math.ceil(keep + band))
    cands = {c for c in range(STEP, hi + 1, STEP) if c >= lo} | ({channels} if channels <= hi else set())
    return sorted(cands) or [keep]


def hardware_aware(
    keep: list[int],
    channels: list[int],
    movable: list[bool],
    sites: list[ConvSite],
    floors: list[int],
    table: LatencyTable,
    log=None,
) -> list[int]:
    """Kept channels per group, re-chosen among measured-fast widths for the ``movable`` groups, removing
    at least the MACs the plain plan ``keep`` removes.

    Local search from the aligned widths at or below the plan: each round takes the best single-group
    move, or the best pair of one-step moves (one group, or a set of look-alike groups, a step wider and
    another a step narrower: what trades MACs from a slow layer to a fast one within the budget), that
    raises modelled MACs/ms; it stops when none does.
    """
    if not sites:
        raise no_convs()
    search = _WidthSearch(keep, channels, movable, sites, floors, table)
    for _ in range(ROUNDS):
        if not search.round():
            break
    table.save()
    if log:
        log(
            f"round-to auto: {table.measured} conv latencies measured "
            f"({table.kernels}, batch {table.batch}); "
            f"kept {sum(search.cur)} of {sum(channels)} channels, modelled {search.best_eff:.0f} MACs/ms"
        )
    return search.cur


class _WidthSearch:
    """The state of ``hardware_aware``'s local search: the current widths and each conv site's modelled
    MACs and milliseconds at them."""

    def __init__(self, keep, channels, movable, sites, floors, table):
        self.sites, self.table, self.channels = sites, table, channels
        self.touching = [
            [i for i, s in enumerate(sites) if g in (s.in_group, s.out_group)] for g in range(len(keep))
        ]
        self.budget = sum(s.macs(keep) for s in sites)  # remove at least what the plain plan removes
        self.cands = [
            candidates(c, k, f) if mv else [k] for c, k, f, mv in zip(channels, keep, floors, movable)
        ]
        self.cur = [max([c for c in cs if c <= k] or [min(cs)]) for cs, k in zip(self.cands, keep)]
        self.times = [self.site_cost(self.cur, i) for i in range(len(sites))]
        self.macs = [s.macs(self.cur) for s in sites]
        self.best_eff = sum(self.macs) / sum(self.times)
        self.movable = [g for g, cs in enumerate(self.cands) if len(cs) > 1]
        self.units = self._units()

    def site_cost(self, k, i):
        return self.table(self.sites[i], *self.sites[i].widths(k))

    def _units(self) -> list[list[int]]:
        """What moves together: each group alone, and each set of look-alike groups (same width, same conv
        shapes, e.g. the inner convs of one ResNet stage), so a stage can change width in one move."""
        alike: dict = {}
        for g in self.movable:
            shape = sorted(
                (self.sites[i].hw_in, tuple(self.sites[i].module.kernel_size), self.sites[i].out_group == g)
                for i in self.touching[g]
            )
            alike.setdefault((self.channels[g], tuple(self.cands[g]), str(shape)), []).append(g)
        return [[g] for g in self.movable] + [gs for gs in alike.values() if len(gs) > 1]

    def evaluate(self, moves: dict[int, int], total_macs: int, total_ms: float):
        """(MACs, ms) after the moves, recomputing only the sites they touch."""
        trial = list(self.cur)
        for g, c in moves.items():
            trial[g] = c
        idx = {i for g in moves for i in self.touching[g]}
        m = total_macs + sum(self.sites[i].macs(trial) - self.macs[i] for i in idx)
        t = total_ms + sum(self.site_cost(trial, i) - self.times[i] for i in idx)
        return m, t

    def step(self, unit, sign):
        """The unit's members one candidate up (+1) or down (-1), if all can move; else None."""
        moves = {}
        for g in unit:
            nxt = [c for c in self.cands[g] if (c - self.cur[g]) * sign > 0]
            if not nxt:
                return None
            moves[g] = min(nxt) if sign > 0 else max(nxt)
        return moves

    def round(self) -> bool:
        """Apply the best move of this round; False when no move raises the modelled MACs/ms."""
        best = None
        singles = [{g: c} for g in self.movable for c in self.cands[g] if c != self.cur[g]]
        ups = [m for u in self.units if (m := self.step(u, +1))]
        downs = [m for u in self.units if (m := self.step(u, -1))]
        singles += [m for m in ups + downs if len(m) > 1]
        pairs = [{**a, **b} for a in ups for b in downs if not a.keys() & b.keys()]
        total_macs, total_ms = sum(self.macs), sum(self.times)
        for moves in singles + pairs:
            m, t = self.evaluate(moves, total_macs, total_ms)
            if m <= self.budget and m / t > self.best_eff * (1 + 1e-3):
                self.best_eff, best = m / t, moves
        if best is None:
            return False
        for g, c in best.items():
            self.cur[g] = c
        for i in {i for g in best for i in self.touching[g]}:
            self.times[i], self.macs[i] = self.site_cost(self.cur, i), self.sites[i].macs(self.cur)
        return True

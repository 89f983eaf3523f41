"""--round-to auto: the width search against a synthetic latency table, and end to end with a measured one."""

import math

import torch
import torch.nn as nn

from filterprune.criteria import PruneContext, make_criterion
from filterprune.pruning import PlanConfig, prune
from filterprune.pruning.align import candidates, conv_sites, hardware_aware
from filterprune.pruning.graph import build_graph, channel_groups, output_layers


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 40, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(40, 40, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(40, 40, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(40, 10),
    )


class BlockTable:
    """A fake runtime whose kernels work in blocks of 16 output channels (a width of 17 costs 32)."""

    runtime, kernels, batch, measured = "fake", "fake", 1, 0

    def __call__(self, site, cin, cout):
        return (
            math.ceil(cout / 16)
            * 16
            * cin
            * math.prod(site.module.kernel_size)
            * math.prod(site.hw_out)
            / 1e6
        )

    def save(self):
        pass


def _sites(model):
    x = torch.randn(1, 3, 16, 16)
    DG = build_graph(model, x)
    groups = channel_groups(DG, output_layers(DG))
    return [cg.channels for cg in groups], conv_sites(model, x, groups)


def test_candidates_reach_aligned_widths_on_both_sides_of_a_narrow_layer():
    assert candidates(16, 10, 2) == [8, 16]  # +-10% of 16 alone would only allow 8
    assert candidates(512, 308, 52) == list(range(256, 361, 8))  # 308 +- 51.2


def test_search_moves_to_block_multiples_and_keeps_the_mac_budget():
    model = _net()
    channels, sites = _sites(model)
    plain = [math.ceil(0.6 * c) for c in channels]  # 24 each: every width pays for a partial block
    table = BlockTable()

    def macs(k):
        return sum(s.macs(k) for s in sites)

    def efficiency(k):
        return macs(k) / sum(table(s, *s.widths(k)) for s in sites)

    chosen = hardware_aware(plain, channels, [True] * len(channels), sites, [4] * len(channels), table)
    assert macs(chosen) <= macs(plain)  # removes at least what the plain plan removes
    assert all(c % 16 == 0 for c in chosen), chosen  # no partial blocks left
    assert efficiency(chosen) > 1.2 * efficiency(plain)


def test_search_leaves_groups_that_may_not_move():
    model = _net()
    channels, sites = _sites(model)
    plain = [math.ceil(0.6 * c) for c in channels]
    chosen = hardware_aware(plain, channels, [False, True, True], sites, [4] * 3, BlockTable())
    assert chosen[0] == plain[0]


def test_round_to_auto_end_to_end_with_a_measured_table(tmp_path, monkeypatch):
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path))
    model = _net()
    x = torch.randn(1, 3, 16, 16)
    prune(model, make_criterion("l1"), PlanConfig(0.4, round_to="auto", target_batch=2), PruneContext(x), 10)
    widths = [m.out_channels for m in model if isinstance(m, nn.Conv2d)][:2]
    assert all(w % 8 == 0 for w in widths), widths
    assert all(16 <= w <= 32 for w in widths), widths  # 24 planned, one step either side
    assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert list((tmp_path / "latency-lut").glob("*.json"))  # the table is cached for the next run


def test_greedy_honours_round_to_auto(monkeypatch):
    """Greedy (sequential) gets the same aligned counts as every other criterion; only the channels differ."""
    from filterprune.data import ImageData

    monkeypatch.setattr("filterprune.pruning.align.LatencyTable", lambda *a: BlockTable())
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    data = ImageData(
        "t", x, torch.arange(16) % 10, x[:4], torch.arange(4), [str(i) for i in range(10)], source="t"
    )
    widths = {}
    for name in ("l1", "greedy"):
        model = _net()
        ctx = PruneContext(torch.randn(1, 3, 16, 16), data=data, batch_size=8, calib_batches=1)
        prune(model, make_criterion(name), PlanConfig(0.4, round_to="auto"), ctx, 10)
        widths[name] = [m.out_channels for m in model if isinstance(m, nn.Conv2d)]
        assert model.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert all(w % 16 == 0 for w in widths["greedy"]), widths  # 24 planned: the block table moves it
    assert widths["greedy"] == widths["l1"]


def test_a_damaged_latency_cache_is_measured_again(tmp_path, monkeypatch):
    from filterprune.pruning.align import LatencyTable

    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path))
    table = LatencyTable("onnxruntime", 2)
    table.path.parent.mkdir(parents=True)
    table.path.write_text('{"half a fi')
    assert LatencyTable("onnxruntime", 2).table == {}


def test_the_latency_cache_is_keyed_by_openvinos_version_and_the_precision(tmp_path, monkeypatch):
    """An OpenVINO table timed under another OpenVINO version is not read back (its kernels differ);
    onnxruntime's file does not depend on OpenVINO's version; each precision keeps its own entries."""
    from filterprune.pruning import align

    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path))
    paths = []
    for v in ("2025.1.0", "2026.4.1"):
        monkeypatch.setattr(align, "openvino_version", lambda v=v: v)
        paths.append(
            (align.LatencyTable("openvino", 2, 1).path, align.LatencyTable("onnxruntime", 2, 1).path)
        )
    (ov_old, ort_old), (ov_new, ort_new) = paths
    assert ov_old != ov_new and ort_old == ort_new and ov_new != ort_new
    _, sites = _sites(_net())
    fp32, int8 = (align.LatencyTable("openvino", 2, 1, p).label for p in ("fp32", "int8"))
    assert sites[1].key(24, 24, 2, fp32) != sites[1].key(24, 24, 2, int8)

"""--target-precision: measured targets planned on the deployed precision. The candidates and the latency
table's probes are the INT8 (QDQ) files the deployment runs; the search, with a stand-in clock whose INT8
kernels are slow at some widths, plans other widths than at fp32; the report gives the speedup against
dense at the same precision and against dense fp32; bad input. Timings here are fakes or assert nothing
about speed."""

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn

import filterprune
from filterprune.benchmarking import kernels
from filterprune.cli import main
from filterprune.config import CompressConfig
from filterprune.criteria import PruneContext, make_criterion
from filterprune.errors import UsageError
from filterprune.pruning import PlanConfig, prune_in_steps
from filterprune.pruning import latency_target as lt
from filterprune.pruning.align import LatencyTable, conv_sites
from filterprune.pruning.graph import build_graph, channel_groups, output_layers
from filterprune.reporting.schema import SCHEMA_VERSION
from filterprune.targets import Speedup
from filterprune.tracing import layer_macs, profile

SLOW_INT8 = 3.0  # the stand-in INT8 kernels run this much slower at widths not a multiple of 16


class PrecisionClock:
    """A runtime whose fp32 convs cost their MACs, and whose INT8 convs cost a third of that at output
    widths that are multiples of 16 and SLOW_INT8 times more at any other width."""

    def conv_ms(self, module, hw_out, cin, cout, precision):
        aligned = cin % 16 == 0 and cout % 16 == 0
        per = 1e-6 if precision == "fp32" else 1e-6 / 3 * (1 if aligned else SLOW_INT8)
        return layer_macs(module, hw_out[0] * hw_out[1], cin, cout) * per

    def conv(self, site, cin, cout, precision):
        return self.conv_ms(site.module, site.hw_out, cin, cout, precision)

    def model_ms(self, model, x, precision):
        calls = profile(model.eval(), x[:1]).calls
        return 0.5 + sum(
            self.conv_ms(m, c[-1].out[-2:], m.in_channels, m.out_channels, precision)
            for m, c in calls.items()
            if isinstance(m, nn.Conv2d)
        )


@pytest.fixture
def clock(monkeypatch, tmp_path):
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path / "cache"))
    c = PrecisionClock()
    monkeypatch.setattr(
        LatencyTable, "_measure", lambda self, site, cin, cout: c.conv(site, cin, cout, self.precision)
    )

    def samples(models, x, runtime, threads, rounds=0, precision="fp32"):
        at = (lambda k: precision) if isinstance(precision, str) else precision.__getitem__
        return {k: [c.model_ms(m, x, at(k))] for k, m in models.items()}

    monkeypatch.setattr(lt, "measure_samples", samples)
    return c


def _net():
    torch.manual_seed(0)

    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    layers = [*block(3, 48), *block(48, 64), nn.MaxPool2d(2), *block(64, 64), nn.AdaptiveAvgPool2d(1)]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, 10)).eval()


def _plan(precision, target=2.0):
    net = _net()
    plan = PlanConfig(Speedup(target), target_batch=4, target_precision=precision)
    res = prune_in_steps(net, make_criterion("l1"), plan, PruneContext(torch.randn(1, 3, 16, 16)), 10)
    return net, res.latency_target


def test_int8_plan_takes_the_widths_the_int8_kernels_run_fast(clock):
    x = torch.randn(4, 3, 16, 16)
    dense = _net()
    fp32_net, fp32 = _plan("fp32")
    int8_net, int8 = _plan("int8")
    assert fp32["precision"] == "fp32" and int8["precision"] == "int8"
    cut = [w for w in int8["widths"].values()]
    assert all(w % 16 == 0 for w in cut), int8["widths"]  # planned on the INT8 table: its fast widths
    assert any(w % 16 for w in fp32["widths"].values()), fp32["widths"]  # fp32 knows nothing of them
    # the target holds against the dense model at the same precision ...
    measured = clock.model_ms(dense, x, "int8") / clock.model_ms(int8_net, x, "int8")
    assert measured == pytest.approx(int8["measured_speedup"], rel=1e-6)
    assert 2.0 * (1 - lt.TOLERANCE) <= measured <= 2.0 * 1.2
    # ... and the record gives it against dense fp32 too, timed beside it
    vs_fp32 = clock.model_ms(dense, x, "fp32") / clock.model_ms(int8_net, x, "int8")
    assert int8["speedup_vs_dense_fp32"] == pytest.approx(vs_fp32, rel=1e-6)
    assert int8["dense_fp32_ms"] == pytest.approx(clock.model_ms(dense, x, "fp32"), rel=1e-6)
    assert "speedup_vs_dense_fp32" not in fp32  # an fp32 plan is its own reference


def test_the_int8_table_keeps_its_own_entries(clock):
    _plan("int8", 1.5)
    table = json.loads(LatencyTable().path.read_text())
    runtimes = {json.loads(k)[0] for k in table}
    assert runtimes == {"onnxruntime/int8"}  # never mixed with the fp32 entries (key: "onnxruntime")


# ------------------------------------------------------------------------------ the real INT8 files
def _layer():
    return nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU()).eval()


def test_int8_candidates_are_the_deployed_quantizers_files(monkeypatch):
    x = torch.randn(4, 8, 12, 12)
    calls = []
    real = kernels.quantize.quantize
    monkeypatch.setattr(kernels.quantize, "quantize", lambda *a: calls.append(1) or real(*a))
    kernels._QUANTIZED.clear()
    layer = _layer()
    b = kernels.onnx_bytes(layer, x, "int8")
    proto = onnx.load_from_string(b)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in proto.graph.node}
    md = {p.key: p.value for p in proto.metadata_props}
    assert md["precision"] == "int8" and "QDQ" in md["quantization"]
    assert kernels.onnx_bytes(layer, x, "int8") == b and calls == [1]  # the same file is quantized once
    fp32 = onnx.load_from_string(kernels.onnx_bytes(layer, x, "fp32"))
    assert "QuantizeLinear" not in {n.op_type for n in fp32.graph.node} and calls == [1]
    run = kernels.runner(_layer(), x, "onnxruntime", 1, "int8")
    (y,) = run()
    assert np.asarray(y).shape == (4, 16, 12, 12)


def test_the_int8_latency_table_times_quantized_probes(monkeypatch, tmp_path):
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path))
    quantized = []
    real = kernels.int8_bytes
    monkeypatch.setattr(kernels, "int8_bytes", lambda b, x: quantized.append(x.shape) or real(b, x))
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3)).eval()
    x = torch.randn(1, 3, 10, 10)
    groups = channel_groups(build_graph(model, x), output_layers(build_graph(model, x)))
    (site, _) = conv_sites(model, x, groups)
    fp32, int8 = LatencyTable("onnxruntime", 2, 1), LatencyTable("onnxruntime", 2, 1, "int8")
    assert fp32(site, 3, 8) > 0 and quantized == []
    assert int8(site, 3, 8) > 0 and quantized == [(2, 3, 10, 10)]  # timed on its INT8 file
    assert json.loads(next(iter(int8.table)))[0] == "onnxruntime/int8"
    assert json.loads(next(iter(fp32.table)))[0] == "onnxruntime"


def test_the_search_runs_on_the_int8_kernels_for_real(monkeypatch, tmp_path):
    """No fake clock: every candidate quantized and timed on onnxruntime; only that it runs is asserted
    (a busy machine may find any speedup out of reach)."""
    monkeypatch.setenv("FILTERPRUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(lt, "ROUNDS", 2)
    monkeypatch.setattr(lt, "ITERATIONS", 1)
    precisions = []
    real = lt.runner
    monkeypatch.setattr(lt, "runner", lambda *a: precisions.append(a[4]) or real(*a))
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip
    plan = PlanConfig(Speedup(1.05), target_batch=2, target_precision="int8", threads=1, layer_floor=0.25)
    try:
        res = prune_in_steps(model, make_criterion("l1"), plan, PruneContext(torch.randn(1, 3, 16, 16)), 10)
        assert res.latency_target["precision"] == "int8" and res.latency_target["speedup_vs_dense_fp32"] > 0
    except lt.RunError as e:
        assert "on onnxruntime int8 at batch 2 is out of reach" in str(e)
    assert set(precisions) == {"int8"} or set(precisions) == {"int8", "fp32"}
    assert precisions[0] == "int8"


# ------------------------------------------------------------------------------------------- options
def test_an_int8_target_adds_int8_to_the_precisions():
    cfg = CompressConfig.of(model="resnet20", criterion="l1", target_speedup=2, target_precision="int8")
    cfg.validate()
    assert cfg.precisions == ("fp32", "int8") and cfg.prune.plan("layerwise").target_precision == "int8"
    assert cfg.with_values(precision=("int8",)).precisions == ("int8",)
    assert cfg.with_values(export=False).precisions == ("fp32",)  # nothing to quantize: the plan alone
    assert CompressConfig.of(model="resnet20", criterion="l1", sparsity=0.4).precisions == ("fp32",)


def test_a_plan_refuses_a_precision_its_runtime_lacks():
    with pytest.raises(UsageError, match="target_precision int8 does not run on target_runtime torch"):
        PlanConfig(Speedup(2.0), target_runtime="torch", target_precision="int8")
    with pytest.raises(UsageError, match="bf16 runs on openvino"):
        PlanConfig(Speedup(2.0), target_precision="bf16")


def test_prune_plans_on_the_precision_it_is_given(clock):
    """``filterprune.prune(target_precision=...)`` reaches the planner: the int8 plan takes the widths the
    stand-in INT8 kernels run fast, on an INT8 latency table; the fp32 plan does not."""
    x = torch.randn(1, 3, 16, 16)
    int8 = filterprune.prune(_net(), x, "l1", target_speedup=2.0, target_batch=4, target_precision="int8")
    assert {json.loads(k)[0] for k in json.loads(LatencyTable().path.read_text())} == {"onnxruntime/int8"}
    fp32 = filterprune.prune(_net(), x, "l1", target_speedup=2.0, target_batch=4)
    widths = {
        p: [m.out_channels for m in r.model if isinstance(m, nn.Conv2d)]
        for p, r in (("int8", int8), ("fp32", fp32))
    }
    assert all(w % 16 == 0 for w in widths["int8"]) and any(w % 16 for w in widths["fp32"]), widths


def test_prune_and_pruner_refuse_a_bad_target_precision_naming_it():
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(UsageError, match="unknown target_precision 'fp64'") as e:
        filterprune.prune(_net(), x, "l1", target_speedup=2.0, target_precision="fp64")
    assert "target_precision" in e.value.params
    with pytest.raises(UsageError, match="target_precision int8 does not run on target_runtime torch"):
        filterprune.prune(_net(), x, target_speedup=2.0, target_precision="int8", target_runtime="torch")
    with pytest.raises(UsageError, match="unknown target_precision 'fp64'"):
        filterprune.Pruner(_net(), x, target_speedup=2.0, target_precision="fp64")


def test_round_to_auto_alone_measures_the_target_precision(clock):
    """``round_to="auto"`` with a sparsity: its latency table is timed on the INT8 kernels when
    ``target_precision="int8"`` (their fast widths: 32 where fp32's equal MACs/ms keep the plan's 24)."""
    x = torch.randn(1, 3, 16, 16)
    widths = {}
    for p in ("fp32", "int8"):
        kw = {"sparsity": 0.4, "round_to": "auto", "target_batch": 4, "target_precision": p}
        net = _net()
        filterprune.prune(net, x, "l1", **kw)
        widths[p] = [m.out_channels for m in net if isinstance(m, nn.Conv2d)]
    assert widths == {"fp32": [24, 32, 32], "int8": [32, 32, 32]}
    table = json.loads(LatencyTable().path.read_text())
    assert {json.loads(k)[0] for k in table} == {"onnxruntime", "onnxruntime/int8"}


def test_target_precision_with_round_to_auto_alone_is_accepted():
    cfg = CompressConfig.of(
        model="resnet20", criterion="l1", sparsity=0.4, round_to="auto", target_precision="int8"
    )
    cfg.validate()
    assert cfg.precisions == ("fp32", "int8")  # the widths planned for the INT8 files: they are checked
    assert cfg.prune.plan("layerwise").target_precision == "int8"
    with pytest.raises(UsageError, match="target_speedup, target_latency or round_to auto") as e:
        cfg.with_values(round_to=8).validate()
    assert "round_to" in e.value.params


def _errors(capsys) -> list[str]:
    lines = capsys.readouterr().err.strip().splitlines()
    return [line for line in lines if not line.startswith("[filterprune]")]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--target-speedup", "2", "--target-precision", "fp64"], "invalid choice: 'fp64'"),
        (
            ["--target-speedup", "2", "--target-precision", "int8", "--target-runtime", "torch"],
            "--target-precision int8 does not run on --target-runtime torch",
        ),
        (["--target-speedup", "2", "--target-precision", "bf16"], "bf16 runs on openvino"),
        (["--sparsity", "0.4", "--target-precision", "int8"], "plans the widths of --target-speedup"),
    ],
)
def test_bad_target_precision_is_one_line_exit_2(tmp_path, capsys, args, needle):
    out = tmp_path / "o"
    fast = ["--epochs", "0", "--finetune-epochs", "0", "--no-bench", "--dataset", "digits"]
    assert main(["compress", "resnet20", "--criterion", "l1", *args, *fast, "--out", str(out)]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


# ------------------------------------------------------------------------------------------- compress
TINY = """
import torch.nn as nn

def build(num_classes=10):
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(3, 32), nn.MaxPool2d(2), *block(32, 48), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(48, num_classes))
"""


def test_compress_plans_on_int8_and_reports_both_speedups(clock, tmp_path):
    out = tmp_path / "run"
    (tmp_path / "tiny.py").write_text(TINY)
    argv = [
        "compress", f"{tmp_path / 'tiny.py'}:build", "--criterion", "l1", "--target-speedup", "1.5", "--target-precision", "int8",
        "--target-batch", "4", "--dataset", "digits", "--epochs", "0", "--finetune-epochs", "0",
        "--calib-images", "16", "--bench-batch-sizes", "2", "--bench-iters", "2", "--bench-warmup", "0",
        "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    r = json.loads((out / "report.json").read_text())
    t = r["latency_target"]
    assert t["precision"] == "int8" and t["speedup_vs_dense_fp32"] > 0 and t["dense_fp32_ms"] > 0
    assert r["schema_version"] == SCHEMA_VERSION
    # the INT8 files are written, run over the test split and timed: the target is checked where it was planned
    assert (out / "model.int8.onnx").is_file() and (out / "dense.int8.onnx").is_file()
    assert {(f["variant"], f["precision"]) for f in r["deployed"]["files"]} >= {("pruned", "int8")}
    int8 = [x for x in r["latency"] if x["runtime"] == "onnxruntime" and x["precision"] == "int8"]
    assert int8 and all(x["speedup"] > 0 and x["speedup_vs_dense_fp32"] > 0 for x in int8)
    md = (out / "report.md").read_text()
    assert "Latency target on onnxruntime int8" in md and "Against the dense model at fp32" in md


def test_the_tensorrt_flavour_is_symmetric_int8():
    """TensorRT's explicit quantization takes zero points of 0 in int8 only (the CPU file has uint8
    activations)."""
    from onnx import numpy_helper

    from filterprune.exporting import quantize

    x = torch.randn(4, 8, 12, 12)
    fp32 = onnx.load_from_string(kernels.fp32_bytes(_layer(), x))
    for tensorrt, dtypes in ((True, {np.dtype("int8")}), (False, {np.dtype("int8"), np.dtype("uint8")})):
        proto = quantize.quantize(fp32, x.numpy(), {"images": 4}, tensorrt=tensorrt)
        inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        zps = [inits[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
        assert zps and {z.dtype for z in zps} <= dtypes
        if tensorrt:
            assert all((z == 0).all() for z in zps)
            assert (
                "symmetric int8 activations" in {p.key: p.value for p in proto.metadata_props}["quantization"]
            )
        else:
            assert {z.dtype for z in zps} == {np.dtype("uint8")}


# ------------------------------------------------------------------------------- the precision table
def _table_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "precision_table.py"
    spec = importlib.util.spec_from_file_location("precision_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_precision_table_reads_its_rows_and_the_goal():
    pt = _table_script()
    ms = {
        ("dense", "fp32"): 100.0,
        ("pruned", "fp32"): 50.0,
        ("dense", "int8"): 40.0,
        ("pruned", "int8"): 20.0,
    }
    rows = [
        {
            "model": m, "runtime": "onnxruntime", "batch": 32, "variant": v, "precision": p, "p50_ms": t,
            "spread": 0.1, "speedup_vs_dense_fp32": 100.0 / t,
            "speedup_vs_dense_same_precision": ms[("dense", p)] / t, "loadavg_before": 1.2, "busy": "",
        }
        for m in ("vgg16", "resnet56")
        for (v, p), t in ms.items()
        if (m, v) != ("resnet56", "pruned")
    ]  # fmt: skip
    lt = {
        "conv_latencies_measured": 40,
        "iterations": [{}] * 3,
        "measured_speedup": 2.1,
        "speedup_vs_dense_fp32": 5,
    }
    records = {
        "vgg16": {
            "plans": {"onnxruntime": {"asked": 2.0, "plan_s": 60.0, "latency_target": lt}},
            "macs": {"dense": 300, "pruned@onnxruntime": 100},
        },
        "resnet56": {
            "plans": {"onnxruntime": {"asked": 2.0, "plan_s": 9.0, "unreachable": "out of reach"}},
            "macs": {"dense": 100},
        },
    }
    env = {
        "cpu": "cpu", "cores": 2, "threads": 2, "torch": "t", "onnxruntime": "o", "openvino": None,
        "date": "d", "wall_min": 1.0, "loadavg_start": 1.0, "loadavg_end": 1.1, "command": "c",
        "target_speedup": 2.0, "target_batch": 32, "rounds": 11, "runtimes": ["onnxruntime"],
    }  # fmt: skip
    md = pt.markdown(rows, records, env)
    assert (
        "| vgg16 | onnxruntime | 32 | 100.00 (1.00x) | 50.00 (2.00x) | 40.00 (2.50x) | 20.00 (5.00x) | **2.00x** |"
        in md
    )
    assert (
        "- onnxruntime, vgg16: pruned int8 2.00x against dense int8 (meets 1.9x), 5.00x against dense fp32"
        in md
    )
    assert "- onnxruntime, resnet56: no pruned int8 row at batch 32" in md
    assert "- onnxruntime: 1 of 2 model(s) at >= 4.0x against dense fp32" in md
    assert "- resnet56 on onnxruntime: asked 2.00x: out of reach (out of reach); no plan" in md
    assert "3.00x fewer" in md
    assert "not quiet" not in md


@pytest.mark.slow  # ~1-2 min: plans resnet20 on the INT8 kernels and times every row for real
def test_the_precision_table_runs_end_to_end_on_its_smoke_setting(tmp_path):
    import csv
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [sys.executable, str(root / "benchmarks/precision_table.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(root), "FILTERPRUNE_CACHE": str(tmp_path / "c")},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    got = {(r["runtime"], r["variant"], r["precision"], r["batch"]) for r in rows}
    assert {("onnxruntime", "dense", p, b) for p in ("fp32", "int8") for b in ("1", "4")} <= got
    assert all(float(r["p50_ms"]) > 0 and float(r["loadavg_before"]) >= 0 for r in rows)
    assert "| resnet20 | onnxruntime | 4 |" in (tmp_path / "results.md").read_text()

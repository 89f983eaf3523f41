"""`filterprune bench`: the CSV contract, honest speedups, and bad input."""

import csv
import logging
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from filterprune.benchmarking.config import BenchConfig
from filterprune.benchmarking.targets import Variant
from filterprune.benchmarking.timing import COLUMNS, _add_speedups, run_bench
from filterprune.cli import main
from filterprune.errors import UsageError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "l1",
                "--sparsity",
                "0.5",
                "--round-to",
                "1",
                "--dataset",
                "synthetic",
                "--epochs",
                "0",
                "--finetune-epochs",
                "0",
                "--no-bench",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def test_bench_writes_the_csv_contract(run_dir, tmp_path, capsys):
    assert (
        main(
            [
                "bench",
                str(run_dir),
                "--batch-sizes",
                "1,4",
                "--iters",
                "5",
                "--warmup",
                "1",
                "--memory",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(tmp_path / "b" / "bench.csv")))
    assert list(rows[0].keys()) == COLUMNS
    assert {(r["variant"], r["runtime"], r["batch_size"]) for r in rows} == {
        (v, rt, b) for v in ("dense", "pruned") for rt in ("torch", "onnxruntime") for b in ("1", "4")
    }
    for r in rows:
        assert float(r["p50_ms"]) <= float(r["p90_ms"]) <= float(r["p99_ms"])
        assert float(r["throughput"]) == pytest.approx(int(r["batch_size"]) / float(r["p50_ms"]) * 1e3)
        assert r["gpu_peak_allocated_mb"] == "" and float(r["cpu_peak_rss_mb"]) > 0
        if r["variant"] == "pruned":
            assert float(r["theoretical_speedup"]) > 2
    assert (tmp_path / "b" / "bench.md").is_file() and (tmp_path / "b" / "latency_vs_batch.png").is_file()
    if not torch.cuda.is_available():
        assert "no CUDA GPU here; GPU rows skipped" in capsys.readouterr().err
        assert all(r["device"] == "cpu" for r in rows)


def test_speedup_compares_same_runtime_device_and_batch():
    timed = [
        ("dense", "torch", 1, 10.0, 100),
        ("dense", "onnxruntime", 1, 4.0, 100),
        ("dense", "torch", 8, 60.0, 100),
        ("pruned", "torch", 1, 5.0, 40),
        ("pruned", "onnxruntime", 1, 2.0, 40),
        ("pruned", "torch", 8, 30.0, 40),
    ]
    rows = [
        {"variant": v, "runtime": rt, "device": "cpu", "batch_size": b, "p50_ms": ms, "macs": macs}
        for v, rt, b, ms, macs in timed
    ]
    vs = [Variant("dense", (3, 8, 8), 0, 100), Variant("pruned", (3, 8, 8), 0, 40)]
    _add_speedups(rows, vs)
    pruned = [r for r in rows if r["variant"] == "pruned"]
    assert [r["speedup"] for r in pruned] == [2.0, 2.0, 2.0]
    assert all(r["theoretical_speedup"] == 2.5 and r["speedup_efficiency"] == 0.8 for r in pruned)


class _Hungry(nn.Module):
    """Runs out of memory above batch 2, like a big batch on a small GPU."""

    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return x.flatten(1)[:, :10]


def test_out_of_memory_is_recorded_and_the_run_continues(caplog):
    small = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    vs = [Variant("dense", (3, 2, 2), 0, 10, small), Variant("hungry", (3, 2, 2), 0, 5, _Hungry())]
    with caplog.at_level(logging.INFO, logger="filterprune"):  # the library speaks through logging only
        rows = run_bench(
            vs, BenchConfig(runtimes=("torch",), batch_sizes=(1, 4), iters=3, warmup=1, memory=False)
        )
    by = {(r["variant"], r["batch_size"]): r for r in rows}
    assert by[("hungry", 4)]["error"] == "out of memory" and by[("hungry", 4)]["p50_ms"] == ""
    assert by[("dense", 4)]["p50_ms"] != "" and by[("hungry", 1)]["speedup"] != ""
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("torch/cpu batch 4:")]
    assert len(said) == 1 and said[0].endswith("errors: {'hungry': 'out of memory'}"), said


@pytest.mark.parametrize(
    "kw,needle",
    [
        ({"batch_sizes": (0,)}, "bench_batch_sizes must be integers >= 1"),
        ({"providers": ("openvino",)}, "unknown provider"),
        ({"runtimes": ("tvm",)}, "unknown runtime"),
    ],
)
def test_bad_config(kw, needle):
    with pytest.raises(UsageError, match=needle):
        BenchConfig(**kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize(
    "args,needle",
    [
        (["--device", "cuda"], "no CUDA GPU"),
        (["--provider", "tensorrt"], "not available here"),
        (["--batch-sizes", "0"], "--batch-sizes must be integers >= 1"),
        (["--provider", "bogus"], "unknown provider"),
    ],
)
def test_bad_cli_input_exits_2(run_dir, tmp_path, args, needle):
    p = subprocess.run(
        [sys.executable, "-m", "filterprune", "bench", str(run_dir), *args, "--out", str(tmp_path / "b")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "b").exists()


def test_tensorrt_rows_build_the_engine_of_their_precision(monkeypatch, tmp_path):
    """`bench --provider tensorrt`: an INT8 file's row enables TensorRT's int8 kernels (fp16 for the layers
    left unquantized), an fp32 file's fp16 row (--fp16) its fp16 engine, an fp32 row neither; each
    precision caches its engines apart. Checked on the providers handed to onnxruntime (no GPU here)."""
    import onnxruntime as ort

    from filterprune.benchmarking.runners import ort_providers
    from filterprune.benchmarking.timing import _runner, row_precisions

    class Built(Exception):
        pass

    def session(path, opts, providers):
        raise Built(providers)

    monkeypatch.setattr(ort, "InferenceSession", session)
    cfg = BenchConfig(runtimes=("onnxruntime",), precisions=("fp32", "int8"), fp16=True, memory=False)
    fp32 = Variant("pruned", (3, 8, 8), 0, 0, onnx=tmp_path / "model.onnx")
    int8 = Variant("pruned", (3, 8, 8), 0, 0, onnx=tmp_path / "model.int8.onnx", precision="int8")
    assert row_precisions(fp32, "onnxruntime", "tensorrt", cfg) == ["fp16"]
    assert row_precisions(int8, "onnxruntime", "tensorrt", cfg) == ["int8"]
    for v, precision in ((fp32, "fp32"), (fp32, "fp16"), (int8, "int8")):
        with pytest.raises(Built) as e:
            _runner(v, precision, torch.zeros(1, 3, 8, 8), "onnxruntime", "tensorrt", cfg, 1)
        (name, trt), cuda, cpu = e.value.args[0]
        assert (name, cuda, cpu) == (
            "TensorrtExecutionProvider",
            ("CUDAExecutionProvider", {}),
            "CPUExecutionProvider",
        )
        assert trt["trt_int8_enable"] is (precision == "int8"), precision
        assert trt["trt_fp16_enable"] is (precision != "fp32"), precision
        assert trt["trt_engine_cache_path"] == str(tmp_path / ".trt_cache" / precision)
    assert ort_providers(int8.onnx, "cpu") == [("CPUExecutionProvider", {})]  # TensorRT's options only there


def test_onnxruntime_sessions_do_not_spin_between_interleaved_calls(run_dir):
    """Spinning idle workers of one session slowed the next session's threads (benchmarks/speedup)."""
    from filterprune.benchmarking.runners import ort_session

    sess = ort_session(run_dir / "model.onnx", "cpu", 2)
    assert sess.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"

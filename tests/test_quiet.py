"""Timings a busy machine cannot fool: a CPU hog beside a benchmark is seen and said; a quiet run says nothing."""

import subprocess
import sys

import pytest
import torch
from reports import make_report

from filterprune.benchmarking import quiet
from filterprune.benchmarking.config import BenchConfig
from filterprune.benchmarking.files import markdown
from filterprune.benchmarking.targets import Variant
from filterprune.benchmarking.timing import run_bench
from filterprune.models import ModelSpec, build_model


def _variants():
    torch.manual_seed(0)
    m = build_model(ModelSpec("resnet20")).eval()
    n = sum(p.numel() for p in m.parameters())
    return [Variant("dense", (3, 32, 32), n, 1, m), Variant("pruned", (3, 32, 32), n, 1, m)]


CFG = BenchConfig(runtimes=("torch",), devices=("cpu",), batch_sizes=(4,), warmup=1, iters=8, memory=False)


@pytest.fixture
def hog():
    """Busy loops that are *other* processes: started through a shell that exits at once, so they are not
    this process's descendants (whose CPU time counts as the benchmark's own)."""
    import os
    import signal
    import time

    pids = []
    for _ in range(max(1, quiet.cores() - 1)):
        out = subprocess.run(
            ["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pids.append(int(out.strip()))
    time.sleep(0.5)
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_cpu_hog_beside_the_benchmark_is_reported(hog):
    import pandas as pd

    assert quiet.other_load(0.5) > quiet.BUSY_CORES
    if quiet.cores() >= 2:
        assert quiet.free_threads(quiet.cores()) <= quiet.cores() - len(hog)
    rows = run_bench(_variants(), CFG)
    assert rows and all("other processes used" in r["machine_busy"] for r in rows)
    md = markdown(pd.DataFrame(rows), {"cpu": "test"})
    assert "not quiet" in md and "other processes used" in md


def test_a_quiet_run_carries_no_warning():
    import pandas as pd

    load = quiet.other_load(1.0)
    if load > quiet.BUSY_CORES / 2:
        pytest.skip(
            f"this machine is busy ({load:.2f} cores used by other processes): cannot show a quiet run"
        )
    rows = run_bench(_variants(), CFG)
    assert all(r["machine_busy"] == "" for r in rows), rows[0]["machine_busy"]
    assert "not quiet" not in markdown(pd.DataFrame(rows), {"cpu": "test"})


def test_the_compress_report_carries_the_warning():
    from filterprune.reporting.run_report import markdown as report_md

    base = make_report()
    row = base["latency_rows"][0]
    busy = report_md(
        {**base, "latency_rows": [{**row, "machine_busy": "other processes used 1.00 of 2 cores"}]}
    )
    assert "not quiet" in busy
    assert "not quiet" not in report_md({**base, "latency_rows": [{**row, "machine_busy": ""}]})


def test_openvino_runtime_rows_beside_onnxruntime(tmp_path):
    """`filterprune bench --runtime onnxruntime,openvino` times both from the same ONNX files. In a fresh
    process: OpenVINO's TBB runtime loaded into the long-lived test process was followed, many tests later,
    by heap corruption (SIGSEGV in malloc) in the suite."""
    pytest.importorskip("openvino")
    import csv
    import subprocess
    import sys

    from filterprune.exporting.convert import export_onnx

    files = [export_onnx(v.model, tmp_path / f"{v.name}.onnx", v.input_shape) for v in _variants()]
    out = tmp_path / "bench"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "filterprune",
            "bench",
            *map(str, files),
            "--runtime",
            "onnxruntime,openvino",
            "--batch-sizes",
            "2",
            "--warmup",
            "1",
            "--iters",
            "3",
            "--no-memory",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert {(r["runtime"], r["variant"]) for r in rows} == {
        (rt, v) for rt in ("onnxruntime", "openvino") for v in ("dense", "pruned")
    }
    assert all(float(r["p50_ms"]) > 0 and not r["error"] for r in rows)

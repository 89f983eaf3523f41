"""benchmarks/nncf_vs_ort.py: onnxruntime's QDQ file against NNCF's PTQ on OpenVINO, its tables and verdict
from fake rows, and (slow) its smoke setting end to end."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "nncf_vs_ort.py"


def _script():
    spec = importlib.util.spec_from_file_location("nncf_vs_ort", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake():
    top1 = {"fp32": 60.0, "ort-qdq": 59.0, "nncf": 60.5}
    acc = [
        {"model": "m", "variant": v, "method": "fp32", "runtime": "torch", "top1": 60.0, "vs_fp32": 0.0}
        for v in ("dense", "pruned")
    ] + [
        {"model": "m", "variant": v, "method": meth, "runtime": rt, "top1": t, "vs_fp32": t - 60.0}
        for v in ("dense", "pruned")
        for rt in ("onnxruntime", "openvino")
        for meth, t in top1.items()
        if not (rt == "onnxruntime" and meth == "nncf")
    ]
    ms = {("openvino", "fp32"): 10.0, ("openvino", "ort-qdq"): 5.0, ("openvino", "nncf"): 4.0,
          ("onnxruntime", "fp32"): 8.0, ("onnxruntime", "ort-qdq"): 4.0}  # fmt: skip
    lat = [
        {"model": "m", "variant": v, "batch": b, "runtime": rt, "method": meth, "p50_ms": t * (1 + (v == "pruned")),
         "spread": 0.1, "speedup_vs_fp32": ms[(rt, "fp32")] / t, "speedup_vs_ort_qdq": ms[(rt, "ort-qdq")] / t,
         "loadavg_before": 1.3, "busy": ""}
        for v in ("dense", "pruned") for b in (1, 32) for (rt, meth), t in ms.items()
    ]  # fmt: skip
    records = {
        "m": {
            "baseline": "benchmarks/accuracy/baselines/m",
            "prune": {"criterion": "l1", "sparsity": 0.4, "round_to": 8},
            "macs": {"dense": 300, "pruned": 100},
            "finetune": {"epochs": 3, "lr": 0.01},
            "int8_convs_openvino": {"dense nncf": {"int8": 21, "total": 22}},
            "quantize_s": {"dense nncf": 3.0},
        }
    }
    env = {"cpu": "cpu", "cores": 2, "threads": 2, "torch": "t", "onnxruntime": "o", "openvino": "ov",
           "nncf": "n", "date": "d", "wall_min": 1.0, "loadavg_start": 1.0, "loadavg_end": 1.1, "command": "c",
           "methods": ["fp32", "ort-qdq", "nncf"], "calib_images": 256, "seed": 0, "rounds": 11}  # fmt: skip
    return acc, lat, records, env


def test_its_markdown_gives_both_quantizers_side_by_side_and_the_verdict():
    md = _script().markdown(*_fake())
    assert "| m | dense | 60.00 | 60.00 | 59.00 (-1.00) | 60.00 | 59.00 (-1.00) | 60.50 (+0.50) |" in md
    assert (
        "| m | dense | 32 | 8.000 (1.00x) | 4.000 (2.00x) | 10.000 (1.00x) | 5.000 (2.00x) | 4.000 (2.50x) |"
        in md
    )
    assert "- m pruned batch 32: nncf 8.000 ms, 1.25x the QDQ file's speed on OpenVINO" in md
    assert "- m dense: nncf top-1 +1.50 points against the QDQ file on OpenVINO" in md
    assert "nncf is >= 5% faster in 4 of 4 timings; more than 0.5 points more accurate in 2, less" in md
    assert "3.00x fewer MACs" in md and "dense nncf 21/22" in md
    assert "not quiet" not in md


def test_a_busy_block_is_said():
    acc, lat, records, env = _fake()
    lat[0]["busy"] = "other processes used 1.50 of 2 cores"
    assert "**The machine was not quiet while timing** (other processes used 1.50" in _script().markdown(
        acc, lat, records, env
    )


@pytest.mark.slow  # ~1-2 min: finetunes, quantizes both ways, measures and times resnet20 for real
def test_the_comparison_runs_end_to_end_on_its_smoke_setting(tmp_path):
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    p = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "FILTERPRUNE_CACHE": str(tmp_path / "c")},
    )
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads((tmp_path / "results.json").read_text())
    got = {(r["runtime"], r["method"], r["variant"], r["batch"]) for r in doc["latency"]}
    pairs = [("onnxruntime", "fp32"), ("onnxruntime", "ort-qdq"), ("openvino", "fp32"), ("openvino", "ort-qdq"),
             ("openvino", "nncf")]  # fmt: skip
    assert got == {(rt, m, v, b) for rt, m in pairs for v in ("dense", "pruned") for b in (1, 4)}
    assert all(r["p50_ms"] > 0 and r["loadavg_before"] >= 0 for r in doc["latency"])
    acc = {(r["runtime"], r["method"], r["variant"]): r for r in doc["accuracy"]}
    assert set(acc) == {(rt, m, v) for rt, m in [*pairs, ("torch", "fp32")] for v in ("dense", "pruned")}
    assert all(r["images"] == 128 and 0 <= r["top1"] <= 100 for r in acc.values())
    # the fp32 file computes what PyTorch computes, in both runtimes
    assert acc[("onnxruntime", "fp32", "dense")]["top1"] == acc[("torch", "fp32", "dense")]["top1"]
    assert acc[("openvino", "fp32", "dense")]["top1"] == acc[("torch", "fp32", "dense")]["top1"]
    convs = doc["records"]["resnet20-e30-seed0"]["int8_convs_openvino"]
    assert convs["dense nncf"]["int8"] > 0 and convs["dense ort-qdq"]["int8"] > 0
    assert "nncf in openvino" in (tmp_path / "results.md").read_text()

"""benchmarks/detector_coverage.py: one bad model fails its row, not the sweep (time and memory limits,
a dying child), a rerun continues where the sweep stopped, nothing reaches the network, and (slow) the
smoke setting runs two detectors end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "detector_coverage.py"


def _script():
    spec = importlib.util.spec_from_file_location("detector_coverage", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass looks its module up
    spec.loader.exec_module(mod)
    return mod


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", "import sys, time\n" + code]


def test_a_hanging_child_is_killed_and_named_by_its_last_stage():
    dc = _script()
    code = "print('stage: prune', file=sys.stderr, flush=True)\ntime.sleep(60)"
    t = __import__("time").monotonic()
    row = dc.run_child(_child(code), timeout=1.5, max_rss_mb=4096)
    assert __import__("time").monotonic() - t < 20
    assert row == {"status": "failed", "stage": "prune", "reason": "timed out after 1.5 s"}


def test_a_child_over_its_memory_limit_is_killed():
    dc = _script()
    code = "print('stage: export', file=sys.stderr, flush=True)\nb = bytearray(400 * 2**20)\ntime.sleep(60)"
    row = dc.run_child(_child(code), timeout=50, max_rss_mb=200)
    assert row["stage"] == "export" and row["reason"] == "killed: resident memory over 200 MB"


def test_a_dying_child_says_how_and_a_clean_one_gives_nothing():
    dc = _script()
    code = "print('stage: build', file=sys.stderr, flush=True)\nsys.exit('boom')"
    assert dc.run_child(_child(code), 30, 4096) == {
        "status": "failed",
        "stage": "build",
        "reason": "process died (exit 1): boom",
    }
    assert dc.run_child(_child("pass"), 30, 4096) is None


def test_the_sweep_continues_where_it_stopped_and_tables_every_row(tmp_path):
    dc = _script()
    ran = []

    def fake(name):
        ran.append(name)
        if name == "bad":
            return {
                "model": name,
                "family": "?",
                "status": "failed",
                "stage": "export",
                "reason": "a|b",
                "seconds": 1.0,
            }
        return {
            "model": name, "family": "FCN", "kind": "segmentation", "input": "160", "status": "ok", "stage": "",
            "params_dense": 2e6, "params_pruned": 1e6, "macs_dense": 4e9, "macs_pruned": 2e9,
            "theoretical_speedup": 2.0, "kept_channels": 0.7, "left_whole": 1, "onnx_ok": True,
            "exported": "whole model ('out')", "exporter": "torchscript", "max_abs_diff": 1e-6,
            "max_rel_diff": 1e-7, "seconds": 3.0,
        }  # fmt: skip

    dc.sweep(["good", "bad"], tmp_path, fake, command="cmd")
    assert ran == ["good", "bad"]
    dc.sweep(["good", "bad", "new"], tmp_path, fake, command="cmd")  # a rerun runs only what is missing
    assert ran == ["good", "bad", "new"]
    dc.sweep(["good", "bad", "new"], tmp_path, fake, redo_failed=True, command="cmd")
    assert ran == ["good", "bad", "new", "bad"]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["good", "bad", "new"]
    md = (tmp_path / "table.md").read_text()
    assert "**2 of 3 pass**; failed at: export 1" in md
    assert "| bad | ? |  | failed | export |" in md and "a\\|b" in md
    assert "| good | FCN | 160 | ok |  | 2.00 → 1.00 | 4.00 → 2.00 | 2.00 | 0.70 | 1 | yes |" in md
    csv_lines = (tmp_path / "table.csv").read_text().splitlines()
    assert csv_lines[0].startswith("model,family,kind,input,status,stage") and len(csv_lines) == 4
    dc.sweep(["good"], tmp_path, fake, fresh=True, command="cmd")
    assert ran[-1] == "good" and [
        r["model"] for r in json.loads((tmp_path / "results.json").read_text())["rows"]
    ] == ["good"]


def test_the_child_refuses_the_network_and_counts_the_attempts():
    code = (
        f"sys.path.insert(0, {str(SCRIPT.parent)!r})\n"
        "import detector_coverage as dc, urllib.request\n"
        "attempts = dc.offline()\n"
        "try:\n"
        "    urllib.request.urlopen('http://192.0.2.1/weights.pt', timeout=5)\n"
        "except OSError as e:\n"
        "    print('refused' if 'refused by the coverage sweep' in str(e) else e)\n"
        "print(len(attempts))\n"
    )
    p = subprocess.run(_child(code), capture_output=True, text=True, timeout=60)
    assert p.stdout.split() == ["refused", "1"], p.stderr[-500:]


@pytest.mark.slow  # ~20 s (1-2 min on a busy machine): ssdlite320 and YOLOv8n pruned, exported and checked in their own processes
def test_the_smoke_setting_prunes_exports_and_checks_two_detectors(tmp_path):
    pytest.importorskip("ultralytics")
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["model"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert sorted(rows) == ["ssdlite320_mobilenet_v3_large", "yolov8n.yaml"]
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["structure_same"] and r["onnx_ok"] and r["max_rel_diff"] <= 1e-4
        assert r["macs_pruned"] < 0.9 * r["macs_dense"] and 0.5 < r["kept_channels"] < 1
        assert r["network_attempts"] == 0 and r["exporter"] in ("dynamo", "torchscript")
    assert rows["ssdlite320_mobilenet_v3_large"]["exported"] == "raw head outputs"
    assert "**2 of 2 pass**" in (tmp_path / "table.md").read_text()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0 and "[1/2]" not in again.stdout  # nothing re-run

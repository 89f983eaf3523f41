"""benchmarks/detection_table.py: its rows, goal and markdown from fake report dicts, the compress command it
builds, resuming (runs faked), and (slow) its smoke setting end to end."""

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "detection_table.py"
V8, SSD = "yolo:yolov8n.yaml", "tv:ssdlite320_mobilenet_v3_large"
RCNN = "tv:fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("detection_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _lat(variant, runtime, batch, ms, precision="fp32", speedup=None):
    row = {"variant": variant, "runtime": runtime, "device": "cpu", "precision": precision, "batch_size": batch,
           "threads": 2, "p50_ms": ms, "machine_busy": "", "error": ""}  # fmt: skip
    return {**row, "speedup": speedup} if speedup else row


def _report(dense50=0.40, pruned50=0.39, speedup=1.6):
    return {
        "metrics": {
            "headline": "map",
            "names": {"map": "mAP@0.5:0.95", "map50": "mAP@0.5"},
            "dense": {"map": 0.20, "map50": dense50},
            "pruned": {"map": 0.19, "map50": pruned50},
        },
        "dense": {"params": 3_000_000},
        "pruned": {"params": 1_500_000},
        "theoretical_speedup": 1.9,
        "model_source": {"input_shape": [3, 320, 320]},
        "dataset": {"train": 540, "val": 60, "test": 150},
        "baseline": {"epochs": 10},
        "finetune": {"config": {"epochs": 10}, "kept_epoch": 9, "distill": "off"},
        "latency_target": {
            "runtime": "onnxruntime",
            "precision": "fp32",
            "batch": 1,
            "threads": 2,
            "dense_ms": 20.0,
            "pruned_ms": 12.0,
            "measured_speedup": 1.55,
        },  # fmt: skip
        "latency_rows": [
            _lat("dense", "onnxruntime", 1, 20.0),
            _lat("pruned", "onnxruntime", 1, 20.0 / speedup, speedup=speedup),
            _lat("pruned", "onnxruntime", 1, 5.0, precision="int8", speedup=4.0),  # another precision
            _lat("dense", "torch", 1, 30.0),
            _lat("pruned", "torch", 1, 10.0, speedup=3.0),  # another runtime
            _lat("dense", "onnxruntime", 8, 100.0),
            _lat("pruned", "onnxruntime", 8, 25.0, speedup=4.0),  # another batch
        ],
        "timings_s": {"baseline": 100.0},
        "machine": {"cpu": "EPYC", "cores": 2, "torch": "2.x", "onnxruntime": "1.x", "gpu": None},
    }


def _row(table, model=V8, **kw):
    return {"model": model, "arm": "plain", "wall_s": 600.0, "load_before": 1.0, "load_after": 2.0,
            "settings": {"target_speedup": 1.5}, **table.from_report(_report(**kw))}  # fmt: skip


def test_a_row_takes_the_onnxruntime_fp32_rows_at_the_planned_batch(table):
    r = _row(table)
    assert r["ort"] == {"runtime": "onnxruntime CPU", "precision": "fp32", "batch": 1, "threads": 2,
                        "dense_ms": 20.0, "pruned_ms": 12.5, "speedup": 1.6, "busy": ""}  # fmt: skip
    assert r["planner"]["measured_speedup"] == 1.55 and r["planner"]["batch"] == 1
    assert (r["dense_map50"], r["pruned_map50"], r["image_size"], r["kept_epoch"]) == (0.40, 0.39, 320, 9)
    steps = {"steps": [{"measured_speedup": 1.2}, {"measured_speedup": 1.5, "batch": 1}]}
    assert table.planner(steps)["measured_speedup"] == 1.5 and table.planner(None) is None


@pytest.mark.parametrize(
    "kw, verdict",
    [
        ({"pruned50": 0.39, "speedup": 1.6}, "**met**: mAP@0.5 -1.0 points at 1.60x"),
        ({"pruned50": 0.37, "speedup": 1.6}, "**missed**: mAP@0.5 -3.0 points at 1.60x"),
        ({"pruned50": 0.41, "speedup": 1.45}, "**missed**: mAP@0.5 +1.0 points at 1.45x"),
    ],
)
def test_the_goal_is_two_map50_points_at_one_and_a_half_times_measured(table, kw, verdict):
    assert table.goal(_row(table, **kw)) == verdict


def test_the_goal_is_yolos_and_says_when_the_dense_model_learnt_little(table):
    assert table.goal(_row(table, SSD)) == "— (the goal is YOLO's)"
    weak = table.goal(_row(table, dense50=0.05, pruned50=0.01))
    assert weak == "**not judged**: mAP@0.5 -4.0 points at 1.60x; dense mAP@0.5 0.050 < 0.1 (undertrained)"
    assert table.goal(_row(table, dense50=0.05, speedup=1.2)).startswith(
        "**missed**"
    )  # too slow all the same
    assert table.goal({"model": V8, "error": "exit 1: boom"}) == "not measured"


def test_the_markdown_has_a_row_per_run_the_latency_named_and_failures(table):
    a = table.options(["--out", "/tmp/unused", "--work", "/tmp/unused"])
    rows = [_row(table), _row(table, SSD), {"model": V8, "arm": "distill", "error": "exit 1: it broke"}]
    md = table.markdown(rows, a, [table.NO_DISTILL.format(models=RCNN)])
    lines = [ln for ln in md.splitlines() if ln.startswith(f"| {V8} |")]
    assert (
        len(lines) == 2
        and lines[0].startswith(f"| {V8} | plain | l1 | 1.5x | ")
        and "0.400 → 0.390 (-1.0)" in lines[0]
        and "**1.60x** (b1, 2 thr)" in lines[0]
    )
    assert (
        "1.55x" in lines[0] and "1.90x" in lines[0] and "3.00M → 1.50M" in lines[0] and "**met**" in lines[0]
    )
    assert "failed: exit 1: it broke" in lines[1] and "not measured" in lines[1]
    assert "onnxruntime CPU fp32 batch 1, 2 thread(s): dense 20.00 ms, pruned 12.50 ms" in md
    goals = [ln for ln in md.splitlines() if ln.startswith("**Goal**")]
    assert goals == [
        f"**Goal** ({V8} plain l1 at 1.5x: mAP@0.5 within 2 points of dense at >= 1.5x measured on onnxruntime CPU): "
        "**met**: mAP@0.5 -1.0 points at 1.60x.",
        f"**Goal** ({V8} distill l1 at —: mAP@0.5 within 2 points of dense at >= 1.5x measured on onnxruntime CPU): "
        "not measured.",
    ]
    assert (
        f"not run for {RCNN}. The detection task does not distill" in md and "Machine: EPYC (2 cores)" in md
    )
    assert "python benchmarks/detection_table.py`" in md  # the defaults: no flags


def test_the_compress_command_names_the_target_the_batch_and_the_arm(table, tmp_path):
    a = table.options(["--work", str(tmp_path), "--out", str(tmp_path), "--threads", "2"])
    yolo = table.compress_argv(V8, "plain", a, "yolo:/s", tmp_path / "r")
    ssd = table.compress_argv(SSD, "distill", a, "coco:/s", tmp_path / "r")
    flags = {t: v for t, v in zip(yolo, yolo[1:] + [""]) if t.startswith("--") and not v.startswith("--")}
    assert yolo[0] == V8 and flags["--target-speedup"] == "1.5" and flags["--target-batch"] == "1"
    assert (
        flags["--bench-batch-sizes"] == "1" and flags["--image-size"] == "256" and flags["--threads"] == "2"
    )
    assert flags["--distill"] == "off" and flags["--criterion"] == "l1" and flags["--task"] == "detection"
    assert "--image-size" not in ssd and ssd[ssd.index("--distill") + 1] == "anneal"
    assert flags["--epochs"] == flags["--finetune-epochs"] == "30"  # each model its own epochs
    assert ssd[ssd.index("--epochs") + 1] == ssd[ssd.index("--finetune-epochs") + 1] == "2"
    a = table.options(["--work", str(tmp_path), "--out", str(tmp_path), "--epochs", "5"])
    assert table.epochs(SSD, a) == (5, 2) and table.settings(a, V8)["epochs"] == 5
    assert table.settings(a, V8)["train"] == 1000 and table.settings(a, SSD)["train"] == 300  # their own
    a = table.options(["--work", str(tmp_path), "--out", str(tmp_path), "--train", "40"])
    assert table.settings(a, SSD)["train"] == 40 and "--train 40" in table.command_line(a)


def test_the_distill_arm_runs_for_single_stage_detectors_and_an_rcnn_gets_a_note(table, tmp_path):
    a = table.options(["--work", str(tmp_path), "--out", str(tmp_path), "--models", f"{V8},{SSD},{RCNN}"])
    notes: list[str] = []
    assert table.jobs(a, notes) == [
        (V8, "plain", "l1"),
        (SSD, "plain", "l1"),
        (RCNN, "plain", "l1"),
        (V8, "distill", "l1"),
        (SSD, "distill", "l1"),
    ]
    assert notes == [table.NO_DISTILL.format(models=RCNN)]
    a = table.options(["--work", str(tmp_path), "--out", str(tmp_path), "--arms", "plain"])
    assert table.jobs(a, notes := []) == [(V8, "plain", "l1"), (SSD, "plain", "l1")] and notes == []
    a = table.options(["--work", str(tmp_path), "--out", str(tmp_path), "--arms", "plain", "--models", V8,
                       "--criteria", "l1,taylor"])  # fmt: skip
    assert table.jobs(a, []) == [(V8, "plain", "l1"), (V8, "plain", "taylor")]
    assert "--criteria l1,taylor" in table.command_line(a)
    argv = table.compress_argv(V8, "plain", a, "yolo:/s", tmp_path / "r", "taylor")
    assert argv[argv.index("--criterion") + 1] == "taylor"


def test_a_rerun_keeps_finished_rows_and_reruns_failed_ones(table, tmp_path, monkeypatch):
    ran = []

    def fake(model, arm, a, criterion):
        ran.append((model, arm))
        bad = model == SSD and ran.count((SSD, arm)) == 1  # fails the first time only
        return {"model": model, "arm": arm, "settings": table.settings(a, model), "error": "exit 1: x"} if bad else {
            **_row(table, model), "arm": arm, "settings": table.settings(a, model)}  # fmt: skip

    monkeypatch.setattr(table, "run_one", fake)
    monkeypatch.setattr(table, "task_distills", lambda model: False)
    argv = ["--work", str(tmp_path), "--out", str(tmp_path)]
    assert table.main(argv) == 1 and ran == [(V8, "plain"), (SSD, "plain")]
    assert table.main(argv) == 0 and ran[2:] == [(SSD, "plain")]  # the failed one again, YOLO kept
    assert table.main(argv + ["--epochs", "3"]) == 0 and len(ran) == 5  # other settings: both again
    assert table.main(argv + ["--epochs", "3", "--fresh"]) == 0 and len(ran) == 7
    assert table.main(argv + ["--epochs", "3", "--target-speedup", "1.6"]) == 0 and len(ran) == 9
    doc = json.loads((tmp_path / "results.json").read_text())  # another target: rows beside the others
    assert [(r["model"], r["settings"]["target_speedup"]) for r in doc["rows"]] == [
        (V8, 1.5), (SSD, 1.5), (V8, 1.6), (SSD, 1.6)]  # fmt: skip
    assert table.main(argv + ["--epochs", "3", "--fresh"]) == 0 and len(ran) == 11
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["model"] for r in doc["rows"]] == [V8, SSD] and "does not distill" in doc["notes"][0]
    assert "--epochs 3" in (tmp_path / "results.md").read_text()


@pytest.mark.slow  # YOLOv8n and SSDlite, plain and distilled, an epoch each on 12 canvases, 1.1x: 2-5 min
def test_the_smoke_table_runs_both_detectors_end_to_end(table, tmp_path):
    pytest.importorskip("ultralytics")
    if not (SHARED_DATA / "cifar10_mini.npz").is_file():
        pytest.skip("real data not found")
    argv = ["--smoke", "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]
    assert table.main(argv) == 0
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    runs = [(r["model"], r["arm"]) for r in doc["rows"]]
    assert runs == [(V8, "plain"), (SSD, "plain"), (V8, "distill"), (SSD, "distill")]
    assert [r["distill"] for r in doc["rows"]] == ["off", "off", "anneal", "anneal"]
    for r in doc["rows"]:
        assert r["ort"]["speedup"] > 0 and r["theoretical_speedup"] > 1.0 and r["dense_map50"] is not None
        assert r["baseline_epochs"] == r["finetune_epochs"] == 1 and Path(r["run_dir"]).is_dir()
    assert doc["rows"][0]["image_size"] == 160
    logs = sorted((tmp_path / "w" / "runs").glob("*.log"))
    stamps = [p.stat().st_mtime_ns for p in logs]
    assert table.main(argv) == 0 and [p.stat().st_mtime_ns for p in logs] == stamps  # resumed: none rerun
    md = (tmp_path / "o" / "results.md").read_text()
    assert "**Goal** (yolo:yolov8n.yaml plain" in md

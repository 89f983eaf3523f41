"""Precision as a dimension: INT8 files (quantized, calibrated on the run's data), every latency row naming
its precision, OpenVINO at an explicit precision matching onnxruntime at fp32, the accuracy of each deployed
file, both of torch's exporters, and bad input."""

import csv
import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from filterprune.benchmarking.targets import Variant
from filterprune.benchmarking.timing import row_precisions
from filterprune.cli import main
from filterprune.config import Bench
from filterprune.exporting.convert import session
from filterprune.reporting.schema import SCHEMA_VERSION

KIT = Path(__file__).resolve().parents[1] / "export" / "run_onnx.py"
N_CALIB = 64


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A trained tiny model (digits), pruned, exported at fp32 and int8, timed at both."""
    out = tmp_path_factory.mktemp("precision") / "run"
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "l1",
                "--sparsity",
                "0.3",
                "--dataset",
                "digits",
                "--epochs",
                "6",
                "--finetune-epochs",
                "2",
                "--precision",
                "fp32,int8",
                "--calib-images",
                str(N_CALIB),
                "--bench-batch-sizes",
                "2",
                "--bench-iters",
                "2",
                "--bench-warmup",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def _meta(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _test_images(n: int = 128) -> np.ndarray:
    from filterprune.data import load_dataset
    from filterprune.data.loader import make_loader

    data = load_dataset("digits", "data")
    return np.concatenate([x.numpy() for x, _ in make_loader(data, "test", n, limit=n)])


def test_compress_writes_int8_files_with_precision_and_calibration(run_dir):
    for fp32, int8 in (("model.onnx", "model.int8.onnx"), ("dense.onnx", "dense.int8.onnx")):
        assert (run_dir / int8).is_file()
        m32, m8 = _meta(run_dir / fp32), _meta(run_dir / int8)
        assert m32["precision"] == "fp32" and m32["exporter"] in ("dynamo", "torchscript")
        assert (m32["exporter"] == "torchscript") == ("exporter_fallback" in m32)  # the fallback says why
        assert m8["precision"] == "int8"
        assert "QDQ" in m8["quantization"] and "per-channel" in m8["quantization"]
        cal = json.loads(m8["calibration"])
        assert cal == {"images": N_CALIB, "seed": 0, "source": "digits training split"}
        assert m8["model"] == "resnet20" and m8["macs"] == m32["macs"]  # the fp32 file's record is kept
        ops = {n.op_type for n in onnx.load(str(run_dir / int8)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert _meta(run_dir / "dense.onnx")["variant"] == "dense"


def test_int8_file_follows_the_fp32_file(run_dir):
    x = _test_images()
    a = session(run_dir / "model.onnx").run(None, {"input": x})[0]
    b = session(run_dir / "model.int8.onnx").run(None, {"input": x})[0]
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9
    assert np.abs(a - b).max() <= 0.25 * max(1.0, np.abs(a).max())


def test_report_has_the_accuracy_of_each_deployed_file(run_dir):
    r = json.loads((run_dir / "report.json").read_text())
    assert r["schema_version"] == SCHEMA_VERSION
    dep = r["deployed"]
    files = {(f["variant"], f["precision"]): f for f in dep["files"]}
    assert set(files) == {(v, p) for v in ("dense", "pruned") for p in ("fp32", "int8")}
    assert {f["path"] for f in dep["files"]} == {
        "dense.onnx",
        "model.onnx",
        "dense.int8.onnx",
        "model.int8.onnx",
    }
    for v in ("dense", "pruned"):  # the fp32 file computes what PyTorch computes
        assert files[(v, "fp32")]["top1"] == pytest.approx(r[v]["accuracy"], abs=1.5 / r["dataset"]["test"])
        assert files[(v, "fp32")]["images"] == r["dataset"]["test"]
        assert files[(v, "fp32")]["top1"] > 0.5  # trained: the INT8 comparison means something
        assert abs(files[(v, "int8")]["top1_drop_points"]) <= 3.0
        drop = 100 * (files[(v, "fp32")]["top1"] - files[(v, "int8")]["top1"])
        assert files[(v, "int8")]["top1_drop_points"] == pytest.approx(drop, abs=1e-3)
    assert dep["calibration"]["images"] == N_CALIB and dep["max_int8_drop"] == 1.0
    md = (run_dir / "report.md").read_text()
    assert "Accuracy of the deployed files" in md and "`model.int8.onnx` | pruned | int8" in md


def test_every_latency_row_names_its_precision(run_dir):
    r = json.loads((run_dir / "report.json").read_text())
    rows = r["latency_rows"]
    assert {(x["runtime"], x["precision"]) for x in rows} == {
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    }
    assert {(x["runtime"], x["precision"]) for x in r["latency"]} == {
        ("torch", "fp32"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
    }
    int8 = next(x for x in r["latency"] if x["precision"] == "int8")
    assert int8["speedup_vs_dense_fp32"] > 0
    assert "| onnxruntime | cpu | int8 |" in (run_dir / "report.md").read_text()


def _in_a_fresh_process(code: str) -> str:
    """OpenVINO runs in a child: its runtime threads in the pytest process made a later fork segfault."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_bench_times_int8_files_on_onnxruntime_and_openvino(run_dir, tmp_path):
    pytest.importorskip("openvino")
    extra = (
        ",bf16"
        if "True"
        in _in_a_fresh_process(
            "from filterprune.benchmarking.runners import ov_has_bf16; print(ov_has_bf16())"
        )
        else ""
    )
    out = tmp_path / "b"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "filterprune",
            "bench",
            str(run_dir),
            "--runtime",
            "onnxruntime,openvino",
            "--precision",
            "fp32,int8" + extra,
            "--batch-sizes",
            "2",
            "--iters",
            "2",
            "--warmup",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "bench.csv")))
    got = {(r["variant"], r["runtime"], r["precision"]) for r in rows}
    want = {
        (v, rt, p)
        for v in ("dense", "pruned")
        for rt in ("onnxruntime", "openvino")
        for p in ("fp32", "int8")
    }
    want |= {(v, "openvino", "bf16") for v in ("dense", "pruned")} if extra else set()
    assert got == want
    assert all(r["error"] == "" and float(r["p50_ms"]) > 0 for r in rows)
    int8 = [r for r in rows if r["precision"] == "int8" and r["variant"] == "pruned"]
    assert all(float(r["speedup_vs_dense_fp32"]) > 0 for r in int8)
    assert "| precision |" in (out / "bench.md").read_text()


def test_openvino_fp32_is_set_explicitly_and_matches_onnxruntime(run_dir):
    pytest.importorskip("openvino")
    out = _in_a_fresh_process(f"""
import torch
from filterprune.benchmarking.runners import openvino_parity, ov_compiled
print(ov_compiled({str(run_dir / "model.onnx")!r}, 1, "fp32").get_property("INFERENCE_PRECISION_HINT"))
for name in ("model.onnx", "dense.onnx"):
    print(openvino_parity({str(run_dir)!r} + "/" + name, torch.randn(3, 3, 32, 32), 1)["max_rel_diff"])
""").split("\n")
    assert out[0] in ("<Type: 'float32'>", "f32")
    assert all(float(v) <= 1e-4 for v in out[1:3])


def test_row_precisions_say_what_each_runtime_computes():
    fp32 = Variant("dense", (3, 8, 8), 0, 1, model=torch.nn.Identity(), onnx=Path("d.onnx"))
    int8 = Variant("dense", (3, 8, 8), 0, 1, onnx=Path("d.int8.onnx"), precision="int8")
    named = Variant("x", (3, 8, 8), 0, 1, onnx=Path("x.onnx"), source={"named": True}, precision="int8")
    cfg = SimpleNamespace(precisions=("fp32", "int8"), fp16=False)
    assert row_precisions(fp32, "torch", "cpu", cfg) == ["fp32"]
    assert row_precisions(int8, "torch", "cpu", cfg) == []
    assert row_precisions(int8, "openvino", "cpu", cfg) == ["int8"]
    both = SimpleNamespace(precisions=("fp32", "bf16"), fp16=False)
    assert row_precisions(fp32, "openvino", "cpu", both) == ["fp32", "bf16"]
    assert row_precisions(int8, "onnxruntime", "cpu", SimpleNamespace(precisions=("fp32",), fp16=False)) == []
    only_fp32 = SimpleNamespace(precisions=("fp32",), fp16=False)
    assert row_precisions(named, "onnxruntime", "cpu", only_fp32) == ["int8"]
    assert row_precisions(fp32, "torch", "cpu", SimpleNamespace(precisions=("fp32",), fp16=True)) == ["bf16"]
    assert row_precisions(fp32, "torch", "cuda", SimpleNamespace(precisions=("fp32",), fp16=True)) == ["fp16"]


def test_an_int8_file_that_loses_too_much_is_a_warning(monkeypatch, tmp_path, caplog):
    from filterprune import stages

    top1 = {"model.onnx": 0.90, "model.int8.onnx": 0.85, "dense.onnx": 0.95, "dense.int8.onnx": 0.948}
    monkeypatch.setattr(
        stages.quantize,
        "onnx_accuracy",
        lambda path, data: {"top1": top1[path.name], "top5": 1.0, "images": 100},
    )
    s = SimpleNamespace(cfg=SimpleNamespace(bench=Bench(max_int8_drop=1.0)), data=None)
    paths = {"dense": tmp_path / "dense.onnx", "pruned": tmp_path / "model.onnx"}
    int8 = {"dense": tmp_path / "dense.int8.onnx", "pruned": tmp_path / "model.int8.onnx"}
    with caplog.at_level(logging.INFO, logger="filterprune"):
        dep = stages.deployed_accuracy(s, paths, int8, {"images": 8}, tmp_path)
    assert len(dep["warnings"]) == 1 and "model.int8.onnx loses 5.00 top-1 points" in dep["warnings"][0]
    assert "warning: model.int8.onnx loses 5.00" in caplog.text


def test_export_writes_the_int8_file_beside_the_fp32_one(run_dir, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert (
        main(["export", str(run_dir), "--out", str(out), "--precision", "fp32,int8", "--calib-images", "32"])
        == 0
    )
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), str(tmp_path / "m.int8.onnx")]
    md = _meta(tmp_path / "m.int8.onnx")
    assert md["precision"] == "int8" and json.loads(md["calibration"])["images"] == 32
    assert _meta(out)["precision"] == "fp32"
    assert main(["export", str(run_dir), "--out", str(tmp_path / "o.onnx"), "--precision", "int8"]) == 0
    assert (tmp_path / "o.int8.onnx").is_file() and not (tmp_path / "o.onnx").exists()


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "mlp"])
def test_both_exporters_prove_parity(name, monkeypatch):
    """torch's torch.export-based exporter (with onnxscript) and the TorchScript fallback, each checked
    against PyTorch; the file names the path taken."""
    from filterprune.criteria import PruneContext, make_criterion
    from filterprune.exporting import convert
    from filterprune.models import ModelSpec, build_model
    from filterprune.pruning import PlanConfig, prune

    torch.manual_seed(0)
    spec = ModelSpec(name, 10, 1, 28) if name == "mlp" else ModelSpec(name)
    shape = (spec.in_channels, spec.image_size, spec.image_size)
    model = build_model(spec).eval()
    prune(model, make_criterion("l1"), PlanConfig(0.4), PruneContext(torch.randn(1, *shape)), 10)
    paths = ["torchscript"]
    try:
        import onnxscript  # noqa: F401

        paths.append("dynamo")
    except ImportError:
        pass
    for path in paths:
        if path == "torchscript":
            monkeypatch.setattr(convert, "_dynamo", lambda *a: (None, "asked for the fallback"))
        else:
            monkeypatch.undo()
        proto = convert.to_proto(model, shape)
        md = {p.key: p.value for p in proto.metadata_props}
        assert md["exporter"] == path and proto.opset_import[0].version == 18
        assert convert.check_parity(model, proto.SerializeToString(), shape)["max_rel_diff"] <= 1e-4
    monkeypatch.undo()
    if len(paths) == 1:
        md = {p.key: p.value for p in convert.to_proto(model, shape).metadata_props}
        assert md["exporter"] == "torchscript" and "onnxscript is not installed" in md["exporter_fallback"]


def test_the_deploy_kit_runs_int8_files(run_dir):
    p = subprocess.run(
        [
            sys.executable,
            str(KIT),
            str(run_dir / "model.int8.onnx"),
            "--iters",
            "2",
            "--warmup",
            "0",
            "--batch",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert f"precision int8 ({N_CALIB} calibration images)" in p.stdout and "latency: batch 2" in p.stdout


def test_the_deploy_kit_classifies_with_an_int8_file_as_with_its_fp32_file(run_dir, tmp_path):
    """Digits test images as PNG files: the kit's top-1 from model.int8.onnx is model.onnx's on nearly all."""
    from PIL import Image

    from filterprune.data import load_dataset

    data = load_dataset("digits", "data")
    paths = []
    for i, img in enumerate(data.x_test[:12]):
        paths.append(tmp_path / f"d{i}.png")
        Image.fromarray(np.asarray(img).transpose(1, 2, 0)).save(paths[-1])  # uint8 3x32x32
    top = {}
    for name in ("model.onnx", "model.int8.onnx"):
        p = subprocess.run(
            [sys.executable, str(KIT), str(run_dir / name), *map(str, paths), "--top", "1", "--iters", "1"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        top[name] = [lines[lines.index(str(q)) + 1].split()[1] for q in paths]
    assert "precision int8" in lines[0]
    agree = sum(a == b for a, b in zip(top["model.onnx"], top["model.int8.onnx"]))
    assert agree >= 10, top


def test_the_deploy_kit_builds_int8_tensorrt_engines_for_int8_files():
    """TensorRT's settings for an INT8 file (no GPU here: the options and the note, not the engine)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_onnx", KIT)
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    int8 = {"precision": "int8", "quantization": "onnxruntime static quantization, QDQ, uint8 activations"}
    opts = kit.provider_options("TensorrtExecutionProvider", [2, 3, 32, 32], False, "c", kit.is_int8(int8))
    assert opts["trt_int8_enable"] is True and opts["trt_profile_opt_shapes"] == "input:2x3x32x32"
    assert (
        kit.provider_options("TensorrtExecutionProvider", [1, 3, 8, 8], True, "c")["trt_int8_enable"] is False
    )
    assert kit.provider_options("CPUExecutionProvider", [1, 3, 8, 8], True, "c", True) == {}
    assert "symmetric int8" in kit.tensorrt_note(int8)
    assert kit.tensorrt_note({"precision": "fp32"}) is None
    assert kit.tensorrt_note({**int8, "quantization": "symmetric int8 activations"}) is None


# ------------------------------------------------------------------------------------------- bad input
def _errors(capsys) -> list[str]:
    """stderr less the progress messages: what the failure says."""
    lines = capsys.readouterr().err.strip().splitlines()
    return [line for line in lines if not line.startswith("[filterprune]")]


FAST = ["--epochs", "0", "--finetune-epochs", "0", "--no-bench", "--dataset", "digits"]


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--precision", "fp64"], "unknown --precision 'fp64'; valid: fp32, bf16, int8"),
        (["--precision", "int8,int8"], "--precision lists int8 twice"),
        (["--precision", "int8", "--calib-images", "0"], "--calib-images must be >= 1"),
        (["--precision", "int8", "--calib-images", "100000"], "--calib-images must be in [1, 1294]"),
        (["--precision", "fp32,bf16"], "--precision bf16 is OpenVINO's"),
        (["--precision", "int8", "--no-export"], "skips the export"),
        (["--max-int8-drop", "-1"], "--max-int8-drop must be >= 0"),
    ],
)
def test_compress_bad_precision_input_is_one_line_exit_2(tmp_path, capsys, args, needle):
    out = tmp_path / "o"
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "l1",
                "--sparsity",
                "0.3",
                *FAST,
                *args,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = _errors(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_quantization_that_fails_after_training_exits_1_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import onnxruntime.quantization

    def broken(*a, **k):
        raise ValueError("unsupported op\nsecond line")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", broken)
    out = tmp_path / "o"
    assert (
        main(
            [
                "compress",
                "resnet20",
                "--criterion",
                "l1",
                "--sparsity",
                "0.3",
                *FAST,
                "--precision",
                "fp32,int8",
                "--calib-images",
                "8",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    err = _errors(capsys)
    assert len(err) == 1 and "INT8 quantization failed: ValueError: unsupported op" in err[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (
            ["bench", "{run}", "--runtime", "torch", "--precision", "int8"],
            "--precision int8 runs on onnxruntime or",
        ),
        (["bench", "{run}", "--precision", "fp32,bf16"], "--precision bf16 is OpenVINO's"),
        (["bench", "{run}", "--precision", "int4"], "unknown --precision 'int4'"),
        (["bench", "{bare}", "--precision", "int8"], "has no dense.int8.onnx: INT8 files are written by"),
        (["export", "{run}", "--out", "{tmp}/m.onnx", "--precision", "int8", "--fp16"], "leave out --fp16"),
        (["export", "{run}", "--out", "{tmp}/m.onnx", "--precision", "fp32,bf16"], "not a file of its own"),
        (
            ["export", "{run}", "--out", "{tmp}/m.onnx", "--precision", "int8", "--calib-images", "99999"],
            "--calib-images must be in [1,",
        ),
        (["export", "{ckpt}", "--out", "{tmp}/m.onnx", "--precision", "int8"], "no report.json beside it"),
    ],
)
def test_bench_and_export_bad_precision_input_is_one_line_exit_2(run_dir, tmp_path, capsys, args, needle):
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("pruned.json", "pruned.safetensors", "model.onnx", "dense.onnx"):
        (bare / f).write_bytes((run_dir / f).read_bytes())
    ckpt = tmp_path / "alone"
    ckpt.mkdir()
    for f in ("pruned.json", "pruned.safetensors"):
        (ckpt / f).write_bytes((run_dir / f).read_bytes())
    out = tmp_path / "bench-out"
    args = [a.format(run=run_dir, tmp=tmp_path, bare=bare, ckpt=ckpt / "pruned.json") for a in args]
    if args[0] == "bench":
        args += ["--out", str(out)]
    assert main(args) == 2
    err = _errors(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists() and not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.int8.onnx").exists()

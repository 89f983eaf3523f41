"""Which INT8 post-training quantizer should OpenVINO users get: onnxruntime's or NNCF's?

filterprune writes ``model.int8.onnx`` with onnxruntime's static quantization (QDQ, per-channel int8
weights, uint8 activations, MinMax; ``filterprune/exporting/quantize.py``), and OpenVINO runs that QDQ file
as its own int8. OpenVINO's own tool is NNCF's post-training quantization. This script measures both on the
same trained models, so the choice is made by latency and accuracy:

- models: committed resnet20 / resnet56 baselines (``benchmarks/accuracy/baselines/``, trained on the real
  CIFAR-10 subset) dense, and pruned l1 ``--sparsity`` (``filterprune.prune``, ``--round-to``) then briefly
  finetuned (``--finetune-epochs``, cosine SGD; 0: pruned as is);
- files: (a) the fp32 ONNX (filterprune's exporter), (b) its onnxruntime QDQ int8 file (``quantize.quantize``),
  (c) NNCF PTQ of the OpenVINO model read from (a) (``nncf.quantize``, default preset, fast bias correction;
  ``--nncf-full-bc`` adds the slower full bias correction as its own method), saved as OpenVINO IR
  (``compress_to_fp16=False``: only the quantizer differs). (b) and (c) calibrate on the same
  ``--calib-images`` training images drawn with ``--seed`` (``quantize.calibration_images``);
- accuracy: top-1/top-5 over the test split of each file in each runtime that runs it (PyTorch, (a) and (b)
  in onnxruntime and OpenVINO, (c) in OpenVINO), OpenVINO's inference precision set explicitly (f32);
- latency: per (runtime, batch) every file of both variants interleaved in this one process (OpenVINO CPU:
  fp32 at f32, (b), (c); onnxruntime CPU: fp32, (b)), ``--threads``, median and spread over ``--rounds``,
  load average and other processes' CPU recorded; and how many convolutions each compiled OpenVINO model
  runs in int8 (its runtime graph), which explains a latency difference.

Writes ``results.md`` and ``results.json`` into ``--out`` (default ``benchmarks/nncf_vs_ort/``).

    OMP_NUM_THREADS=2 PYTHONPATH=$PWD python benchmarks/nncf_vs_ort.py      # alone on a quiet machine
    PYTHONPATH=$PWD python benchmarks/nncf_vs_ort.py --smoke --out /tmp/n  # the code path, well under a minute

Needs ``nncf`` (``pip install nncf``, 3.4 here) and ``openvino``. The full setting on the project's 2-core
machine is estimated (not timed) at 8-15 minutes: finetuning the two pruned models (3 epochs of 5,085 images
each, resnet56 ~3x resnet20) dominates; the quantizers take seconds each, the accuracies (12 files of 1,017
test images per model) about a minute, the timing ~1 minute per model. Finetuning with 2 threads next to
other jobs slowed ~10x here (threads waiting on each other), another reason to run it alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
BASELINES = HERE / "accuracy" / "baselines"
MODELS = ("resnet20-e30-seed0", "resnet56-e15-seed0")
DATA_ROOT = HERE.parent.parent / "shared" / "data"  # the real CIFAR-10 subset beside the checkout
VARIANTS = ("dense", "pruned")
# method -> what it is; (runtime, method) pairs run: NNCF's IR is OpenVINO's own
METHODS = {
    "fp32": "the fp32 ONNX file (filterprune's exporter)",
    "ort-qdq": "onnxruntime static quantization, QDQ, per-channel int8 weights, uint8 activations, MinMax",
    "nncf": "NNCF post-training quantization (default preset: symmetric int8 weights and activations; "
    "fast bias correction), OpenVINO IR",
    "nncf-full-bc": "NNCF post-training quantization (default preset; full bias correction), OpenVINO IR",
}
RUNS = {"onnxruntime": ("fp32", "ort-qdq"), "openvino": ("fp32", "ort-qdq", "nncf", "nncf-full-bc")}
OV_PRECISION = {"fp32": "fp32"}  # the rest: "int8" (their quantized ops in int8, the others at f32)
NEAR_POINTS, FASTER = 0.5, 0.05  # the verdict's "same accuracy" (top-1 points) and "faster" (fraction)


def import_nncf():
    """NNCF, imported without its telemetry: ``nncf`` sends events through ``openvino_telemetry`` when that
    imports; hidden here as ``runners.openvino_core`` hides it for OpenVINO, so nothing reaches the network."""
    hide = "openvino_telemetry" not in sys.modules
    if hide:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]
    try:
        import nncf
    finally:
        if hide and sys.modules.get("openvino_telemetry", 0) is None:
            del sys.modules["openvino_telemetry"]
    return nncf


def networks(folder: str, data, a) -> tuple[dict, dict]:
    """The dense baseline and its pruned (and finetuned) copy, with what was done to them."""
    from filterprune import prune, serialization
    from filterprune.train import TrainConfig, train

    dense = serialization.load(BASELINES / folder / "model.json").eval()
    torch.manual_seed(a.seed)
    x = torch.zeros(1, data.in_channels, data.image_size, data.image_size)
    res = prune(dense, x, "l1", a.sparsity, round_to=a.round_to, seed=a.seed, inplace=False)
    pruned, t0 = res.model, time.perf_counter()
    cfg = TrainConfig(epochs=a.finetune_epochs, lr=a.finetune_lr, seed=a.seed)
    history = train(pruned, data, cfg, torch.device("cpu"), desc="finetune")
    record = {
        "baseline": str((BASELINES / folder).relative_to(HERE.parent)),
        "prune": {"criterion": "l1", "sparsity": a.sparsity, "round_to": a.round_to},
        "macs": {"dense": res.dense["macs"], "pruned": res.pruned["macs"]},
        "params": {"dense": res.dense["params"], "pruned": res.pruned["params"]},
        "finetune": {**cfg.to_dict(), "wall_s": round(time.perf_counter() - t0, 1), "history": history},
    }
    return {"dense": dense.eval(), "pruned": pruned.eval()}, record


def nncf_ptq(fp32: Path, images: np.ndarray, out: Path, fast_bc: bool) -> Path:
    """NNCF PTQ of the OpenVINO model read from ``fp32``, one calibration item per image (NNCF's advice:
    batch 1), saved as IR at ``out`` (.xml) without fp16 weight compression."""
    import openvino as ov

    from filterprune.benchmarking.runners import openvino_core

    nncf = import_nncf()
    model = openvino_core().read_model(str(fp32))
    items = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    q = nncf.quantize(model, items, subset_size=len(images), fast_bias_correction=fast_bc)
    ov.save_model(q, str(out), compress_to_fp16=False)
    return out


def artifacts(nets: dict, images: np.ndarray, folder: Path, a) -> tuple[dict, dict]:
    """(variant, method) -> file, and the seconds each quantizer took (a busy machine's figure)."""
    import onnx

    from filterprune.exporting import quantize
    from filterprune.exporting.convert import export_onnx

    calib = {"images": len(images), "seed": a.seed, "source": "cifar10 training split"}
    paths, seconds = {}, {}
    for variant, net in nets.items():
        fp32 = export_onnx(net, folder / f"{variant}.onnx", (3, 32, 32))
        paths[(variant, "fp32")] = fp32
        t0 = time.perf_counter()
        proto = quantize.quantize(onnx.load(str(fp32)), images, calib)
        seconds[f"{variant} ort-qdq"] = round(time.perf_counter() - t0, 2)
        (folder / f"{variant}.int8.onnx").write_bytes(proto.SerializeToString())
        paths[(variant, "ort-qdq")] = folder / f"{variant}.int8.onnx"
        for method in [m for m in ("nncf", "nncf-full-bc") if m in a.methods]:
            t0 = time.perf_counter()
            xml = folder / f"{variant}.{method}.xml"
            paths[(variant, method)] = nncf_ptq(fp32, images, xml, fast_bc=method == "nncf")
            seconds[f"{variant} {method}"] = round(time.perf_counter() - t0, 2)
    return paths, seconds


def predictor(path: Path, runtime: str, method: str, threads: int):
    """batch (numpy) -> logits, for ``path`` in ``runtime`` (OpenVINO at an explicit precision)."""
    from filterprune.benchmarking.runners import ort_session, ov_compiled

    if runtime == "onnxruntime":
        sess = ort_session(path, "cpu", threads)
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: x})[0]
    compiled = ov_compiled(path, threads, OV_PRECISION.get(method, "int8"))
    return lambda x: np.asarray(compiled({0: x})[0])


def top_k(predict, data) -> dict:
    """Top-1 / top-5 (%) of ``predict`` over the test split."""
    from filterprune.data import make_loader

    n = top1 = top5 = 0
    for x, y in make_loader(data, "test", 256, augment=False, shuffle=False):
        pred = np.argsort(-predict(np.ascontiguousarray(x.numpy(), np.float32)), axis=1)[:, :5]
        y = y.numpy()
        top1 += int((pred[:, 0] == y).sum())
        top5 += int((pred == y[:, None]).any(axis=1).sum())
        n += len(y)
    return {"top1": round(100 * top1 / n, 2), "top5": round(100 * top5 / n, 2), "images": n}


def accuracy_rows(model: str, nets: dict, paths: dict, data, a) -> list[dict]:
    """One row per (variant, method, runtime), and PyTorch's; ``vs_fp32``: top-1 points against the fp32
    file in the same runtime."""
    rows = []
    for variant, net in nets.items():
        with torch.inference_mode():
            acc = top_k(lambda x, net=net: net(torch.from_numpy(x)).numpy(), data)
        rows.append({"model": model, "variant": variant, "method": "fp32", "runtime": "torch", **acc})
        for runtime, methods in RUNS.items():
            for method in [m for m in methods if m in a.methods]:
                acc = top_k(predictor(paths[(variant, method)], runtime, method, a.threads), data)
                rows.append({"model": model, "variant": variant, "method": method, "runtime": runtime, **acc})
    fp32 = {(r["variant"], r["runtime"]): r["top1"] for r in rows if r["method"] == "fp32"}
    for r in rows:
        r["vs_fp32"] = round(r["top1"] - fp32[(r["variant"], r["runtime"])], 2) + 0.0  # no -0.0
    return rows


def int8_convs(path: Path, method: str, threads: int) -> dict:
    """How many convolutions (and fully connected layers) OpenVINO's compiled graph runs in int8."""
    from filterprune.benchmarking.runners import ov_compiled

    compiled = ov_compiled(path, threads, OV_PRECISION.get(method, "int8"))
    total = low = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in ("Convolution", "FullyConnected"):
            total += 1
            low += info["runtimePrecision"].astype(str) in ("i8", "u8")
    return {"int8": low, "total": total}


def runners(paths: dict, runtime: str, x: torch.Tensor, a) -> dict:
    """(variant, method) -> one inference, for every file ``runtime`` runs."""
    from filterprune.benchmarking.runners import openvino_parity, ort_runner, ov_runner

    runs = {}
    for (variant, method), path in paths.items():
        if method not in RUNS[runtime]:
            continue
        if runtime == "onnxruntime":
            runs[(variant, method)] = ort_runner(path, x, "cpu", a.threads)
            continue
        if method == "fp32":  # what an fp32 row claims: OpenVINO computes what onnxruntime computes
            openvino_parity(path, x[:2], a.threads)
        runs[(variant, method)] = ov_runner(path, x, a.threads, OV_PRECISION.get(method, "int8"))
    return runs


def stats(v: list[float]) -> dict:
    p50, p10, p90 = statistics.median(v), float(np.percentile(v, 10)), float(np.percentile(v, 90))
    return {
        "p50_ms": round(p50, 4),
        "p10_ms": round(p10, 4),
        "p90_ms": round(p90, 4),
        "min_ms": round(min(v), 4),
        "max_ms": round(max(v), 4),
        "spread": round((p90 - p10) / p50, 4),
        "rounds": len(v),
    }


def block(model: str, runtime: str, batch: int, paths: dict, a) -> list[dict]:
    """One (runtime, batch): every file of both variants interleaved; one row each."""
    from filterprune.benchmarking import quiet
    from filterprune.pruning.latency_target import interleaved_samples

    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    runs, load0 = runners(paths, runtime, x, a), os.getloadavg()[0]
    with quiet.Watch() as watch:
        samples = interleaved_samples(runs, a.rounds, a.min_s)
    rows = [{"model": model, "runtime": runtime, "batch": batch, "variant": v, "method": m, **stats(s)}
            for (v, m), s in samples.items()]  # fmt: skip
    verdict = watch.verdict([r["spread"] for r in rows])
    p50 = {(r["variant"], r["method"]): r["p50_ms"] for r in rows}
    for r in rows:
        r["speedup_vs_fp32"] = round(p50[(r["variant"], "fp32")] / r["p50_ms"], 4)
        r["speedup_vs_ort_qdq"] = round(p50[(r["variant"], "ort-qdq")] / r["p50_ms"], 4)
        r.update(
            loadavg_before=round(load0, 2),
            loadavg_after=round(os.getloadavg()[0], 2),
            other_cpu_during=verdict["other_load_during"],
            busy=verdict["why"],
        )
    return rows


def model_rows(model: str, data, a) -> tuple[list[dict], list[dict], dict]:
    """Accuracy rows, latency rows and the record (pruning, quantizer times, int8 convs) of one baseline."""
    from filterprune.exporting import quantize

    print(f"nncf_vs_ort: {model}: prune and finetune", file=sys.stderr, flush=True)
    nets, record = networks(model, data, a)
    images = quantize.calibration_images(data, a.calib_images, a.seed)
    with tempfile.TemporaryDirectory(prefix="nncf-vs-ort-") as tmp:
        paths, record["quantize_s"] = artifacts(nets, images, Path(tmp), a)
        print(f"nncf_vs_ort: {model}: accuracy of {len(paths)} files", file=sys.stderr, flush=True)
        acc = accuracy_rows(model, nets, paths, data, a)
        record["int8_convs_openvino"] = {
            f"{v} {m}": int8_convs(p, m, a.threads) for (v, m), p in paths.items() if m != "fp32"
        }
        lat = []
        for batch in a.batches:
            for runtime in RUNS:
                lat += block(model, runtime, batch, paths, a)
                print(f"nncf_vs_ort: {model} {runtime} batch {batch} timed", file=sys.stderr, flush=True)
    return acc, lat, record


def accuracy_table(acc: list[dict], methods: list[str]) -> list[str]:
    cols = [("torch", "fp32")] + [(rt, m) for rt, ms in RUNS.items() for m in ms if m in methods]
    head = " | ".join(f"{m} in {rt}" for rt, m in cols)
    lines = [f"| model | variant | {head} |", "|---|---|" + "---:|" * len(cols)]
    keyed = {(r["model"], r["variant"], r["runtime"], r["method"]): r for r in acc}
    for model, variant in dict.fromkeys((r["model"], r["variant"]) for r in acc):
        cells = []
        for rt, m in cols:
            r = keyed.get((model, variant, rt, m))
            delta = f" ({r['vs_fp32']:+.2f})" if r and m != "fp32" else ""
            cells.append(f"{r['top1']:.2f}{delta}" if r else "—")
        lines.append(f"| {model} | {variant} | {' | '.join(cells)} |")
    return lines


def latency_table(lat: list[dict], methods: list[str]) -> list[str]:
    cols = [(rt, m) for rt, ms in RUNS.items() for m in ms if m in methods]
    head = " | ".join(f"{rt} {m}" for rt, m in cols)
    lines = [
        f"| model | variant | batch | {head} | spread (max) | load |",
        "|---|---|---:|" + "---:|" * (len(cols) + 2),
    ]
    keyed = {(r["model"], r["variant"], r["batch"], r["runtime"], r["method"]): r for r in lat}
    for model, variant, batch in dict.fromkeys((r["model"], r["variant"], r["batch"]) for r in lat):
        cells = []
        for rt, m in cols:
            r = keyed.get((model, variant, batch, rt, m))
            cells.append(f"{r['p50_ms']:.3f} ({r['speedup_vs_fp32']:.2f}x)" if r else "—")
        these = [r for r in lat if (r["model"], r["variant"], r["batch"]) == (model, variant, batch)]
        load = max(r["loadavg_before"] for r in these)
        lines.append(
            f"| {model} | {variant} | {batch} | {' | '.join(cells)} | "
            f"{max(r['spread'] for r in these):.2f} | {load:.2f} |"
        )
    return lines


def verdict_lines(acc: list[dict], lat: list[dict], method: str = "nncf") -> list[str]:
    """NNCF against the QDQ file, both on OpenVINO: latency ratio per (model, variant, batch) and top-1
    difference per (model, variant); then what the numbers say by the rule in ``NEAR_POINTS``/``FASTER``."""
    top1 = {(r["model"], r["variant"], r["method"]): r["top1"] for r in acc if r["runtime"] == "openvino"}
    out, faster, worse, better = [], 0, 0, 0
    pairs = [r for r in lat if r["runtime"] == "openvino" and r["method"] == method]
    for r in pairs:
        gain = r["speedup_vs_ort_qdq"]
        faster += gain >= 1 + FASTER
        out.append(
            f"- {r['model']} {r['variant']} batch {r['batch']}: {method} {r['p50_ms']:.3f} ms, "
            f"{gain:.2f}x the QDQ file's speed on OpenVINO"
        )
    for model, variant in dict.fromkeys((r["model"], r["variant"]) for r in acc):
        diff = top1.get((model, variant, method), float("nan")) - top1.get((model, variant, "ort-qdq"), 0)
        worse += diff < -NEAR_POINTS
        better += diff > NEAR_POINTS
        out.append(f"- {model} {variant}: {method} top-1 {diff:+.2f} points against the QDQ file on OpenVINO")
    if pairs:
        out.append(
            f"- So: {method} is >= {FASTER:.0%} faster in {faster} of {len(pairs)} timings; more than "
            f"{NEAR_POINTS} points more accurate in {better}, less accurate in {worse} of "
            f"{len({(k[0], k[1]) for k in top1})} networks."
        )
    return out


def markdown(acc: list[dict], lat: list[dict], records: dict, env: dict) -> str:
    """results.md: accuracy, latency, NNCF against QDQ, and how each model was made."""
    methods = env["methods"]
    lines = [
        "# INT8 post-training quantization for OpenVINO: onnxruntime QDQ vs NNCF (CPU)",
        "",
        f"Machine: {env['cpu']} ({env['cores']} cores), {env['threads']} thread(s); torch {env['torch']}, "
        f"onnxruntime {env['onnxruntime']}, OpenVINO {env['openvino']}, NNCF {env['nncf']}; {env['date']}, "
        f"{env['wall_min']:.0f} min; load average {env['loadavg_start']:.2f} at the start, "
        f"{env['loadavg_end']:.2f} at the end. Command: `{env['command']}`.",
        "",
        *[f"- `{m}`: {METHODS[m]}" for m in methods],
        f"- calibration: {env['calib_images']} training images, seed {env['seed']}, the same for every method",
        "",
        "## Top-1 (%) on the test split, (points against the fp32 file in the same runtime)",
        "",
        *accuracy_table(acc, methods),
        "",
        f"## Latency: median ms of {env['rounds']} interleaved rounds, (x) = speedup against the fp32 file",
        "",
        *latency_table(lat, methods),
        "",
        "## NNCF against the QDQ file on OpenVINO",
        "",
        *[line for m in methods if m.startswith("nncf") for line in verdict_lines(acc, lat, m)],
        "",
        "## Models",
        "",
    ]
    for model, rec in records.items():
        ft, convs = rec["finetune"], rec["int8_convs_openvino"]
        lines.append(
            f"- {model} (`{rec['baseline']}`): pruned l1 {rec['prune']['sparsity']} round_to "
            f"{rec['prune']['round_to']} ({rec['macs']['dense'] / rec['macs']['pruned']:.2f}x fewer MACs), "
            f"finetuned {ft['epochs']} epoch(s) at lr {ft['lr']}; int8 convs in OpenVINO's compiled graphs: "
            + ", ".join(f"{k} {v['int8']}/{v['total']}" for k, v in convs.items())
            + "; quantizer seconds: "
            + ", ".join(f"{k} {v:.1f}" for k, v in rec["quantize_s"].items())
        )
    busy = sorted({r["busy"] for r in lat if r["busy"]})
    if busy:
        lines += ["", f"**The machine was not quiet while timing** ({'; '.join(busy)}): rerun alone."]
    return "\n".join(lines) + "\n"


def write(out: Path, acc: list[dict], lat: list[dict], records: dict, env: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"env": env, "records": records, "accuracy": acc, "latency": lat}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    (out / "results.md").write_text(markdown(acc, lat, records, env))


def environment(a, t0: float, load0: float) -> dict:
    from importlib.metadata import version

    from filterprune.benchmarking.machine import describe, run_record

    return {
        **describe(),
        "openvino": version("openvino"),
        "nncf": version("nncf"),
        "threads": a.threads,
        "methods": a.methods,
        "calib_images": a.calib_images,
        "seed": a.seed,
        "rounds": a.rounds,
        "min_s": a.min_s,
        **run_record("benchmarks/nncf_vs_ort.py", a.argv, t0, load0),
        "smoke": a.smoke,
    }


def options(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help=f"baseline folders (default: {','.join(MODELS)})")
    p.add_argument("--data-root", default=str(DATA_ROOT))
    p.add_argument("--sparsity", type=float, default=0.4)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--finetune-epochs", type=int, default=None, help="default 3 (--smoke: 1, on 64 images)")
    p.add_argument("--finetune-lr", type=float, default=0.01)
    p.add_argument("--calib-images", type=int, default=None, help="default 256, compress's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nncf-full-bc", action="store_true", help="also NNCF with full bias correction")
    p.add_argument("--batches", default=None, help="comma-separated (default: 1,32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds per block (default 11)")
    p.add_argument("--min-s", type=float, default=None, help="seconds of calls per sample (default 0.2)")
    p.add_argument(
        "--out", default=None, help="default: benchmarks/nncf_vs_ort (--smoke: a temporary folder)"
    )
    p.add_argument("--smoke", action="store_true", help="resnet20, tiny data and timings: the code path")
    a = p.parse_args(argv)
    a.argv = list(argv if argv is not None else sys.argv[1:])
    smoke = {"models": MODELS[0], "finetune_epochs": 1, "calib_images": 16, "batches": "1,4", "rounds": 2,
             "min_s": 0.01, "test_limit": 128, "train_limit": 64}  # fmt: skip
    full = {"models": ",".join(MODELS), "finetune_epochs": 3, "calib_images": 256, "batches": "1,32",
            "rounds": 11, "min_s": 0.2, "out": str(HERE / "nncf_vs_ort"), "test_limit": None,
            "train_limit": None}  # fmt: skip
    for k, v in (smoke if a.smoke else full).items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    a.batches = [int(b) for b in a.batches.split(",")]
    a.methods = ["fp32", "ort-qdq", "nncf"] + (["nncf-full-bc"] if a.nncf_full_bc else [])
    a.out = a.out or tempfile.mkdtemp(prefix="nncf-vs-ort-smoke-")  # a smoke run's numbers are not results
    return a


def dataset(a):
    """The real CIFAR-10 subset (--smoke: its first 64 training and 128 test images)."""
    from filterprune.data import load_data

    data = load_data("cifar10", a.data_root, 0.0, a.seed)
    if a.train_limit is None:
        return data
    n, m = a.train_limit, a.test_limit
    return dataclasses.replace(
        data,
        x_train=data.x_train[:n],
        y_train=data.y_train[:n],
        x_test=data.x_test[:m],
        y_test=data.y_test[:m],
    )


def main(argv=None) -> int:
    a = options(argv)
    import_nncf()  # missing: fail before any work
    torch.set_num_threads(a.threads)
    out, t0, load0 = Path(a.out), time.perf_counter(), os.getloadavg()[0]
    data = dataset(a)
    acc, lat, records = [], [], {}
    for model in a.models.split(","):
        new_acc, new_lat, records[model] = model_rows(model, data, a)
        acc, lat = acc + new_acc, lat + new_lat
        write(out, acc, lat, records, environment(a, t0, load0))  # after each model: a killed run keeps them
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

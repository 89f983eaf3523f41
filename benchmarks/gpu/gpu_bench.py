"""The GPU section of BENCHMARKS.md in one short run on a lent GPU machine (issue 15).

For each model, dense vs plain torch-pruning (l1, sparsity 0.4, MAC-driven widths) vs ``--round-to auto
--target-runtime torch:cuda`` (widths from latencies measured on this GPU), all random-init (latency
and memory do not depend on the weights), timed interleaved in this one process:

- PyTorch CUDA eager, fp32 and fp16 autocast, channels_last, cudnn.benchmark, at batch 1 / 64 / 256;
- CUDA graphs at batch 1 (the launch-bound case where eager timings hide a pruned model's gain);
- ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` of one inference at the largest batch,
  dense vs pruned, each after ``reset_peak_memory_stats`` and ``empty_cache``;
- ``--part tensorrt``: onnxruntime's TensorRT execution provider at ``TRT_BATCH``, each variant's ONNX file
  as a TensorRT FP16 engine (``trt_fp16_enable``) and its INT8 file (QDQ, symmetric int8 activations and
  weights as TensorRT's explicit quantization takes them, calibrated on random inputs) as an INT8 engine
  (``trt_int8_enable``, fp16 where a layer is not quantized); one shape profile per engine (min = opt =
  max); files and engines in a scratch folder that is removed at the end. Wall-clock timing with IOBinding
  (inputs and outputs on the GPU). A row whose provider is not TensorRT, or an onnxruntime without it,
  says so in ``error``. The ``auto`` widths are the ones timed on PyTorch CUDA (not on TensorRT).

The two parts are meant for one device call each (``--part torch``, then ``--part tensorrt``; not yet
timed on a GPU); each writes ``results-<part>.json``, and every ``results-*.json`` in ``--out`` is merged
into ``results.json`` and ``section.md``.

Writes ``results.json`` and ``section.md`` into ``--out`` and, unless ``--dry-run``, replaces the text
between ``<!-- gpu:begin -->`` and ``<!-- gpu:end -->`` in benchmarks/BENCHMARKS.md. ``--dry-run`` runs
the same code on the CPU with tiny settings (the test suite runs it), so the GPU call is one command:

    bash benchmarks/gpu/run.sh             # on the GPU machine (see run.sh)
    python benchmarks/gpu/gpu_bench.py --dry-run --out /tmp/gpu-dry
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = {"vgg16": 32, "resnet56": 32, "tv:resnet18": 224}
PARTS = ("torch", "tensorrt")
TRT_BATCH = 64
TRT_SETTINGS = ("fp16", "int8")


_VARIANTS: dict = {}  # (model, size, device, dry) -> its variants: both parts of one call prune once


def prune_variants(model: str, image_size: int, device: torch.device, dry: bool) -> dict:
    """dense, plain l1 (MAC-driven widths) and round-to-auto widths timed on this device, as nn.Modules."""
    key = (model, image_size, str(device), dry)
    if key not in _VARIANTS:
        _VARIANTS[key] = _prune_variants(model, image_size, device, dry)
    return {k: m.to(device) for k, m in _VARIANTS[key].items()}


def _prune_variants(model: str, image_size: int, device: torch.device, dry: bool) -> dict:
    from filterprune.criteria import PruneContext, make_criterion
    from filterprune.models import ModelSpec, build_model
    from filterprune.pruning import PlanConfig, prune_in_steps

    torch.manual_seed(0)
    dense = build_model(ModelSpec(model, 10, 3, image_size)).eval()
    ctx = PruneContext(example_inputs=torch.randn(1, 3, image_size, image_size), device=device)
    runtime = "torch:cuda" if device.type == "cuda" else "torch"
    out = {"dense": dense}
    for name, round_to in (("pruned", 1), ("auto", "auto")):
        net = copy.deepcopy(dense)
        plan = PlanConfig(0.4, "layerwise", round_to, target_runtime=runtime, target_batch=1 if dry else 64)
        prune_in_steps(net, make_criterion("l1"), plan, ctx, 10)
        out[name] = net.eval()
    return out


def cuda_time(fn, iters: int) -> float:
    """Milliseconds of one call, by CUDA events (wall clock on the CPU)."""
    if torch.cuda.is_available():
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / iters
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return 1000 * (time.perf_counter() - t) / iters


def eager(model, x, fp16: bool):
    autocast = torch.autocast(
        x.device.type, dtype=torch.float16 if x.is_cuda else torch.bfloat16, enabled=fp16
    )

    def run():
        with torch.inference_mode(), autocast:
            model(x)

    return run


def graphed(model, x):
    """A CUDA graph of one inference (batch-1 launch overhead removed); eager on the CPU (dry run)."""
    if not x.is_cuda:
        return eager(model, x, False)
    static = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            model(static)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(g):
        model(static)
    return g.replay


def wall_time(fn, iters: int) -> float:
    """Milliseconds of one call by the wall clock (the call itself waits for its outputs)."""
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return 1000 * (time.perf_counter() - t) / iters


def interleaved_ms(fns: dict, warmup: int, rounds: int, iters: int, timer=cuda_time) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    for _ in range(rounds):  # A B C A B C ...: drift hits every variant alike
        for k, fn in fns.items():
            samples[k].append(timer(fn, iters))
    return {
        k: {"p50_ms": statistics.median(v), "min_ms": min(v), "max_ms": max(v)} for k, v in samples.items()
    }


def peak_memory(model, x) -> dict:
    if not x.is_cuda:
        return {"max_memory_allocated_mb": None, "max_memory_reserved_mb": None}
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize()
    return {
        "max_memory_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
        "max_memory_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
    }


def onnx_files(variants: dict, image_size: int, folder: Path) -> dict:
    """(variant, precision) -> its ONNX file: the fp32 export, and its INT8 (QDQ) file in TensorRT's flavour."""
    import onnx

    from filterprune.benchmarking import kernels
    from filterprune.exporting import quantize

    folder.mkdir(parents=True, exist_ok=True)
    x = torch.randn(8, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    files = {}
    for name, m in variants.items():
        fp32 = kernels.fp32_bytes(copy.deepcopy(m).cpu().eval(), x)
        int8 = quantize.quantize(onnx.load_from_string(fp32), x.numpy(), {"images": 8}, tensorrt=True)
        files[(name, "fp16")] = folder / f"{name}.onnx"  # an fp32 file that TensorRT builds in fp16
        files[(name, "fp16")].write_bytes(fp32)
        files[(name, "int8")] = folder / f"{name}.int8.onnx"
        files[(name, "int8")].write_bytes(int8.SerializeToString())
    return files


def trt_runner(path: Path, precision: str, x, cache: Path, dry: bool):
    """(one inference of ``path`` on ``x``, the provider that runs it): TensorRT at ``precision`` with the
    input and output bound on the GPU; onnxruntime's CPU provider in a dry run."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if dry:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        return (lambda: sess.run(None, feed)), sess.get_providers()[0]
    have = ort.get_available_providers()
    if "TensorrtExecutionProvider" not in have:
        raise RuntimeError(
            f"this onnxruntime has no TensorrtExecutionProvider (it has {', '.join(have)}): "
            "install onnxruntime-gpu built with TensorRT"
        )
    dims = "x:" + "x".join(map(str, x.shape))
    options = {
        "trt_fp16_enable": True,  # INT8 engines too: a layer left unquantized runs in fp16, not fp32
        "trt_int8_enable": precision == "int8",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_profile_min_shapes": dims,
        "trt_profile_opt_shapes": dims,
        "trt_profile_max_shapes": dims,
    }
    sess = ort.InferenceSession(str(path), so, providers=[("TensorrtExecutionProvider", options)])
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
    binding.bind_output(sess.get_outputs()[0].name, "cuda")

    def run():
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run, sess.get_providers()[0]


def trt_rows(model: str, image_size: int, device: torch.device, a) -> list[dict]:
    """TensorRT FP16 and INT8 engines of dense, pruned and auto, interleaved per precision at one batch."""
    from filterprune.benchmarking import counting

    variants = prune_variants(model, image_size, device, a.dry_run)
    macs = {k: counting.count(m, (3, image_size, image_size)).macs for k, m in variants.items()}
    folder = Path(a.scratch) / model.replace(":", "_")
    files = onnx_files(variants, image_size, folder)
    x = torch.randn(a.trt_batch, 3, image_size, image_size).numpy()
    rows, dense_fp16 = [], None
    for precision in TRT_SETTINGS:
        fns, providers, error = {}, {}, ""
        try:
            for k in variants:
                fns[k], providers[k] = trt_runner(
                    files[(k, precision)], precision, x, folder / "trt_cache", a.dry_run
                )
            res = interleaved_ms(fns, a.warmup, a.rounds, a.iters, timer=wall_time)
        except Exception as e:  # noqa: BLE001 - no TensorRT, an engine that fails to build: the row says so
            res, error = {}, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        wrong = {k: p for k, p in providers.items() if p != "TensorrtExecutionProvider" and not a.dry_run}
        error = error or (f"ran on {', '.join(sorted(set(wrong.values())))}, not TensorRT" if wrong else "")
        if precision == "fp16" and res:
            dense_fp16 = res["dense"]["p50_ms"]
        for k in variants:
            r = res.get(k, {})
            rows.append(
                timed_row(model, image_size, k, f"tensorrt {precision}", a.trt_batch, res, macs, error)
                | {
                    "speedup_vs_dense_fp16": (dense_fp16 / r["p50_ms"]) if r and dense_fp16 else None,
                    "provider": providers.get(k, ""),
                }
            )
    return rows


def timed_row(
    model: str, image_size: int, k: str, setting: str, batch: int, res: dict, macs: dict, error: str
):
    """One variant's row of a timed setting: its timings (none when the setting failed) and speedups."""
    r = res.get(k, {})
    return {
        "model": model,
        "image_size": image_size,
        "variant": k,
        "setting": setting,
        "batch": batch,
        **r,
        "macs": macs[k],
        "theoretical_speedup": macs["dense"] / macs[k],
        "speedup": (res["dense"]["p50_ms"] / r["p50_ms"]) if r else None,
        "error": error,
    }


def bench_model(model: str, image_size: int, device: torch.device, a) -> list[dict]:
    from filterprune.benchmarking import counting

    variants = prune_variants(model, image_size, device, a.dry_run)
    macs = {k: counting.count(m, (3, image_size, image_size)).macs for k, m in variants.items()}
    for m in variants.values():
        m.eval().to(device).to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    rows = []
    for batch in a.batch_sizes:
        x = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(
            memory_format=torch.channels_last
        )
        settings = [("eager fp32", False, False), ("eager fp16", True, False)] + (
            [("cuda graph fp32", False, True)] if batch == 1 else []
        )
        for label, fp16, graph in settings:
            try:
                fns = {k: graphed(m, x) if graph else eager(m, x, fp16) for k, m in variants.items()}
                res = interleaved_ms(fns, a.warmup, a.rounds, a.iters)
                error = ""
            except RuntimeError as e:  # out of memory at a large batch: recorded, the run goes on
                res, error = {}, str(e).splitlines()[0][:200]
            for k in variants:
                rows.append(timed_row(model, image_size, k, label, batch, res, macs, error))
        del x
    big = max(a.batch_sizes)
    x = torch.randn(big, 3, image_size, image_size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    for k, m in variants.items():
        rows.append(
            {
                "model": model,
                "image_size": image_size,
                "variant": k,
                "setting": "peak memory",
                "batch": big,
                **peak_memory(m, x),
                "macs": macs[k],
            }
        )
    return rows


def section(rows: list[dict], env: dict) -> str:
    lines = [
        "## GPU (issue 15)",
        "",
        f"Machine: {env['gpu']}; torch {env['torch']}, CUDA {env['cuda']}; command: `bash benchmarks/gpu/run.sh`. "
        "Random-init models; l1 at sparsity 0.4: `pruned` = plain torch-pruning widths (MAC-driven), "
        "`auto` = `--round-to auto --target-runtime torch:cuda`. Median of rounds of interleaved calls "
        "(CUDA events), min–max in brackets.",
        "",
        "| model | setting | batch | dense ms | pruned ms (speedup) | auto ms (speedup) | theoretical (pruned / auto) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    timed = [r for r in rows if r["setting"] != "peak memory"]
    keys = sorted({(r["model"], r["setting"], r["batch"]) for r in timed}, key=lambda k: (k[0], k[2], k[1]))
    for model, setting, batch in keys:
        by = {
            r["variant"]: r
            for r in timed
            if (r["model"], r["setting"], r["batch"]) == (model, setting, batch)
        }
        if by["dense"].get("error"):
            lines.append(f"| {model} | {setting} | {batch} | {by['dense']['error']} | | | |")
            continue

        def cell(v, by=by):
            r = by[v]
            return f"{r['p50_ms']:.3f} [{r['min_ms']:.3f}–{r['max_ms']:.3f}]" + (
                f" ({r['speedup']:.2f}x)" if v != "dense" else ""
            )

        lines.append(
            f"| {model} | {setting} | {batch} | {cell('dense')} | {cell('pruned')} | {cell('auto')} | "
            f"{by['pruned']['theoretical_speedup']:.2f}x / {by['auto']['theoretical_speedup']:.2f}x |"
        )
    lines += trt_lines(rows)
    lines += [
        "",
        "| model | batch | dense allocated / reserved MiB | pruned | auto |",
        "|---|---:|---:|---:|---:|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows if r["setting"] == "peak memory"):
        mem = {r["variant"]: r for r in rows if r["model"] == model and r["setting"] == "peak memory"}

        def m(v, mem=mem):
            r = mem[v]
            if r["max_memory_allocated_mb"] is None:
                return "— (no GPU)"
            return f"{r['max_memory_allocated_mb']:.1f} / {r['max_memory_reserved_mb']:.1f}"

        lines.append(f"| {model} | {mem['dense']['batch']} | {m('dense')} | {m('pruned')} | {m('auto')} |")
    return "\n".join(lines) + "\n"


def trt_lines(rows: list[dict]) -> list[str]:
    """The TensorRT INT8 engines against the dense FP16 engine (the GPU's usual baseline)."""
    int8 = [r for r in rows if r["setting"] == "tensorrt int8"]
    if not int8:
        return []
    lines = [
        "",
        "TensorRT rows: onnxruntime's TensorRT execution provider, one engine per variant and batch (fp16: "
        "the fp32 file with `trt_fp16_enable`; int8: its QDQ file, symmetric int8, with `trt_int8_enable` "
        "and fp16 for unquantized layers); wall clock with IOBinding. INT8 against the dense FP16 engine:",
        "",
        "| model | batch | dense int8 | pruned int8 | auto int8 |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, batch in dict.fromkeys((r["model"], r["batch"]) for r in int8):
        by = {r["variant"]: r for r in int8 if (r["model"], r["batch"]) == (model, batch)}
        cells = [
            f"{by[v]['speedup_vs_dense_fp16']:.2f}x" if by[v].get("speedup_vs_dense_fp16") else "—"
            for v in ("dense", "pruned", "auto")
        ]
        lines.append(f"| {model} | {batch} | " + " | ".join(cells) + " |")
    return lines


def replace_section(md: Path, text: str) -> None:
    doc = md.read_text()
    begin, end = "<!-- gpu:begin -->", "<!-- gpu:end -->"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + doc[doc.index(end) :]
    else:
        doc = doc.rstrip() + f"\n\n{begin}\n{text}{end}\n"
    md.write_text(doc)


def run_parts(a, device: torch.device, sizes: dict, out: Path, t0: float) -> None:
    """Each part asked: its rows for every model, into results-<part>.json."""
    for part in PARTS if a.part == "all" else (a.part,):
        rows = []
        for model in a.models.split(","):
            rows += (bench_model if part == "torch" else trt_rows)(model, sizes[model], device, a)
            print(
                f"gpu_bench: {part} {model} done at {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        env = {
            "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)",
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "onnxruntime": __import__("onnxruntime").__version__,
            "wall_s": round(time.perf_counter() - t0, 1),
            "dry_run": a.dry_run,
        }
        (out / f"results-{part}.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="on the CPU, tiny settings (the suite runs this)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument(
        "--part", choices=(*PARTS, "all"), default="all", help="PyTorch rows, TensorRT rows, or both"
    )
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    device = torch.device("cpu" if a.dry_run else "cuda")
    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU here (use --dry-run on a CPU machine)", file=sys.stderr)
        return 2
    a.batch_sizes = (1, 2) if a.dry_run else (1, 64, 256)
    a.trt_batch = 2 if a.dry_run else TRT_BATCH
    a.warmup, a.rounds, a.iters = (1, 2, 1) if a.dry_run else (10, 7, 20)
    sizes = {m: (16 if a.dry_run else s) for m, s in MODELS.items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    a.scratch = tempfile.mkdtemp(prefix="gpu-bench-")  # ONNX files and TensorRT engines: not results
    t0 = time.perf_counter()
    try:
        run_parts(a, device, sizes, out, t0)
    finally:
        shutil.rmtree(a.scratch, ignore_errors=True)
    parts = [json.loads(f.read_text()) for f in sorted(out.glob("results-*.json"))]  # both calls' rows
    parts = [p for p in parts if p["env"].get("dry_run") == a.dry_run]  # never a dry run's beside a GPU's
    rows = [r for part in parts for r in part["rows"]]
    (out / "results.json").write_text(json.dumps({"env": parts[-1]["env"], "rows": rows}, indent=1))
    text = section(rows, parts[-1]["env"])
    (out / "section.md").write_text(text)
    if not a.dry_run:
        replace_section(HERE.parent / "BENCHMARKS.md", text)
    print(out / "section.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The GPU section of BENCHMARKS.md in one short run on a lent GPU machine (issue 15).

For each model, dense vs plain torch-pruning (l1, sparsity 0.4, MAC-driven widths) vs ``--round-to auto
--target-runtime torch:cuda`` (widths from latencies measured on this GPU), all random-init (latency
and memory do not depend on the weights), timed interleaved in this one process:

- PyTorch CUDA eager, fp32 and fp16 autocast, channels_last, cudnn.benchmark, at batch 1 / 64 / 256;
- CUDA graphs at batch 1 (the launch-bound case where eager timings hide a pruned model's gain);
- ``torch.cuda.max_memory_allocated`` / ``max_memory_reserved`` of one inference at the largest batch,
  dense vs pruned, each after ``reset_peak_memory_stats`` and ``empty_cache``.

Writes ``results.json`` and ``section.md`` into ``--out`` and, unless ``--dry-run``, replaces the text
between ``<!-- gpu:begin -->`` and ``<!-- gpu:end -->`` in benchmarks/BENCHMARKS.md. ``--dry-run`` runs
the same code on the CPU with tiny settings (the test suite runs it), so the GPU call is one command:

    bash benchmarks/gpu/run.sh             # on the GPU machine (see run.sh)
    python benchmarks/gpu/gpu_bench.py --dry-run --out /tmp/gpu-dry
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MODELS = {"vgg16": 32, "resnet56": 32, "tv:resnet18": 224}


def prune_variants(model: str, image_size: int, device: torch.device, dry: bool) -> dict:
    """dense, plain l1 (MAC-driven widths) and round-to-auto widths timed on this device, as nn.Modules."""
    import copy

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


def interleaved_ms(fns: dict, warmup: int, rounds: int, iters: int) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    for _ in range(rounds):  # A B C A B C ...: drift hits every variant alike
        for k, fn in fns.items():
            samples[k].append(cuda_time(fn, iters))
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
                r = res.get(k, {})
                rows.append(
                    {
                        "model": model,
                        "image_size": image_size,
                        "variant": k,
                        "setting": label,
                        "batch": batch,
                        **r,
                        "macs": macs[k],
                        "theoretical_speedup": macs["dense"] / macs[k],
                        "speedup": (res["dense"]["p50_ms"] / r["p50_ms"]) if r else None,
                        "error": error,
                    }
                )
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
    lines += [
        "",
        "| model | batch | dense allocated / reserved MiB | pruned | auto |",
        "|---|---:|---:|---:|---:|",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        mem = {r["variant"]: r for r in rows if r["model"] == model and r["setting"] == "peak memory"}

        def m(v, mem=mem):
            r = mem[v]
            if r["max_memory_allocated_mb"] is None:
                return "— (no GPU)"
            return f"{r['max_memory_allocated_mb']:.1f} / {r['max_memory_reserved_mb']:.1f}"

        lines.append(f"| {model} | {mem['dense']['batch']} | {m('dense')} | {m('pruned')} | {m('auto')} |")
    return "\n".join(lines) + "\n"


def replace_section(md: Path, text: str) -> None:
    doc = md.read_text()
    begin, end = "<!-- gpu:begin -->", "<!-- gpu:end -->"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin) + len(begin)] + "\n" + text + doc[doc.index(end) :]
    else:
        doc = doc.rstrip() + f"\n\n{begin}\n{text}{end}\n"
    md.write_text(doc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dry-run", action="store_true", help="on the CPU, tiny settings (the suite runs this)")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args(argv)
    device = torch.device("cpu" if a.dry_run else "cuda")
    if not a.dry_run and not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU here (use --dry-run on a CPU machine)", file=sys.stderr)
        return 2
    a.batch_sizes = (1, 2) if a.dry_run else (1, 64, 256)
    a.warmup, a.rounds, a.iters = (1, 2, 1) if a.dry_run else (10, 7, 20)
    sizes = {m: (16 if a.dry_run else s) for m, s in MODELS.items()}
    t0 = time.perf_counter()
    rows = []
    for model in a.models.split(","):
        rows += bench_model(model, sizes[model], device, a)
        print(f"gpu_bench: {model} done at {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    env = {
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "wall_s": round(time.perf_counter() - t0, 1),
        "dry_run": a.dry_run,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    text = section(rows, env)
    (out / "section.md").write_text(text)
    if not a.dry_run:
        replace_section(HERE.parent / "BENCHMARKS.md", text)
    print(out / "section.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

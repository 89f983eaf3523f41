"""report.json (everything, machine-readable) and report.md (the same, for people)."""
from __future__ import annotations

from pathlib import Path

from .prune.checkpoint import atomic_write_bytes, atomic_write_json


def _fmt_int(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def markdown(r: dict) -> str:
    d, p = r["dense"], r["pruned"]
    lines = [
        f"# {r['model']} · {r['criterion']} · sparsity {r['sparsity']:g} ({r['scope']})", "",
        f"Data: {r['dataset']['name']} ({r['dataset']['train']} train / {r['dataset']['test']} test; "
        f"{r['dataset']['source']}). Device: {r['device']}. Seed: {r['seed']}.", "",
        "| | params | MACs | FLOPs (seed conv.) | top-1 | top-5 |", "|---|---:|---:|---:|---:|---:|",
    ]
    rows = (("dense", d), ("pruned", p)) + ((("masked (zeros kept)", r["masked"]),) if r.get("masked") else ())
    for name, c in rows:
        lines.append(f"| {name} | {_fmt_int(c['params'])} | {_fmt_int(c['macs'])} | {_fmt_int(c['flops'])} | "
                     f"{100 * c['accuracy']:.2f}% | {100 * c['top5']:.2f}% |")
    if r.get("masked"):
        mk = r["masked"]
        lines += ["", f"Mask ({r['criterion']}, {mk['scope']}): compression {mk['compression']:.3g}, weight density "
                      f"{mk['weight_density']:.4f}, {_fmt_int(mk['nonzero_params'])} non-zero params; FLOP fraction "
                      f"(seed convention, of {d['flops']:,}) {mk['flop_fraction']:.4f}. Mode: {r.get('mode')}."]
    lines += ["", f"Theoretical speedup (dense MACs / pruned MACs): **{r['theoretical_speedup']:.2f}x**. "
                  f"Channel sparsity achieved: {r['channel_sparsity']:.3f}.", ""]
    if r.get("onnx"):
        o = r["onnx"]
        lines += [f"ONNX: `{o['path']}`, dynamic batch; onnxruntime parity at batches {o['batches']}: "
                  f"max abs diff {o['max_abs_diff']:.2e} (relative {o['max_rel_diff']:.2e}).", ""]
    if r.get("latency"):
        has_masked = "masked_ms" in r["latency"][0]
        mcols = (" masked ms | masked speedup |", "---:|---:|") if has_masked else ("", "")
        lines += ["## Latency (median of interleaved runs)", "",
                  f"| runtime | device | batch | dense ms | pruned ms | speedup | efficiency |{mcols[0]}",
                  f"|---|---|---:|---:|---:|---:|---:|{mcols[1]}"]
        for row in r["latency"]:
            eff = row["speedup"] / r["theoretical_speedup"]
            extra = f" {row['masked_ms']:.2f} | {row['masked_speedup']:.2f}x |" if has_masked else ""
            lines.append(f"| {row['runtime']} | {row['device']} | {row['batch_size']} | {row['dense_ms']:.2f} | "
                         f"{row['pruned_ms']:.2f} | {row['speedup']:.2f}x | {eff:.2f} |{extra}")
        lines.append("")
    lines += ["## Layers", "", "| layer | channels before | after |", "|---|---:|---:|"]
    lines += [f"| {x['name']} | {x['channels_before']} | {x['channels_after']} |" for x in r["layers"]]
    m = r["machine"]
    lines += ["", f"Machine: {m['cpu']} ({m['cores']} cores, {m['torch_threads']} torch threads), GPU: {m['gpu']}; "
                  f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, torch-pruning {m['torch_pruning']}.",
              f"Stage times (s): {', '.join(f'{k} {v:.1f}' for k, v in r['timings_s'].items())}.", ""]
    return "\n".join(lines)


def write_report(report: dict, folder: Path) -> None:
    atomic_write_json(Path(folder) / "report.json", report)
    atomic_write_bytes(Path(folder) / "report.md", markdown(report).encode())

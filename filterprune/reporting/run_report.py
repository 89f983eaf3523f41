"""report.json (everything, machine-readable) and report.md (the same, for people)."""

from __future__ import annotations

from pathlib import Path

from ..benchmarking import quiet
from ..benchmarking.files import plot
from ..benchmarking.timing import COLUMNS
from ..fileio import atomic_write_bytes, atomic_write_json
from ..models.factory import portable
from .schema import FILE, Report


def _fmt_int(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _n(count: int | None, noun: str) -> str:  # None: a count the machine did not tell
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _input(r: Report) -> str:
    source = r.get("model_source")
    shape = source.get("input_shape") if source else None
    return "x".join(map(str, shape)) if shape else "as the model's"


def markdown(r: Report) -> str:
    sections = (
        _costs,
        _mask,
        _speedup,
        _latency_targets,
        _onnx,
        _deployed,
        _latency,
        _finetune,
        _layers,
        _machine,
    )
    return "\n".join(line for section in sections for line in section(r))


def _costs(r: Report) -> list[str]:
    """The title, the data line and the table of size and accuracy, dense vs pruned (vs masked)."""
    lines = [
        f"# {portable(r['model'])} · {r['criterion']} · sparsity {r['sparsity']:g} ({r['scope']})",
        "",
        f"Data: {r['dataset']['name']} ({r['dataset']['train']} train / "
        f"{r['dataset'].get('val', 0)} validation / "
        f"{r['dataset']['test']} test; "
        f"{r['dataset']['source']}). Input: {_input(r)}. Device: {r['device']}. Seed: {r['seed']}.",
        "",
        "| | params | MACs | FLOPs (seed conv.) | {} | {} |".format(*_metric_names(r)),
        "|---|---:|---:|---:|---:|---:|",
    ]
    d, p = r["dense"], r["pruned"]
    rows = (("dense", d), ("pruned", p)) + ((("masked (zeros kept)", r["masked"]),) if r["masked"] else ())
    for name, c in rows:
        lines.append(
            f"| {name} | {_fmt_int(c['params'])} | {_fmt_int(c['macs'])} | {_fmt_int(c['flops'])} | "
            f"{100 * c['accuracy']:.2f}% | {100 * c['top5']:.2f}% |"
        )
    return lines


def _metric_names(r: Report) -> tuple[str, str]:
    """The words for ``accuracy`` and ``top5`` (top-1 and top-5 unless the task names other metrics)."""
    m = r.get("metrics")
    names = list(m["names"].values()) if m else []
    return (names[0], names[1]) if len(names) > 1 else ("top-1", "top-5")


def _mask(r: Report) -> list[str]:
    mk = r["masked"]
    if not mk:
        return []
    return [
        "",
        f"Mask ({r['criterion']}, {mk['scope']}): compression {mk['compression']:.3g}, weight density "
        f"{mk['weight_density']:.4f}, {_fmt_int(mk['nonzero_params'])} non-zero params; FLOP fraction "
        f"(seed convention, of {r['dense']['flops']:,}) {mk['flop_fraction']:.4f}. Mode: {r['mode']}.",
    ]


def _speedup(r: Report) -> list[str]:
    return [
        "",
        f"Theoretical speedup (dense MACs / pruned MACs): **{r['theoretical_speedup']:.2f}x**. "
        f"Channel sparsity achieved: {r['channel_sparsity']:.3f}.",
        "",
    ]


def _latency_targets(r: Report) -> list[str]:
    """A measured target's search, one paragraph per step (``--steps``)."""
    lines = []
    t = r.get("latency_target") or {}
    for i, step in enumerate(t.get("steps", [t]) if t else [], 1):
        head = f"Latency target (step {i})" if "steps" in t else "Latency target"
        asked = f"{step['asked_speedup']:.2f}x" + (
            f" ({step['asked_latency_ms']:g} ms)" if step["asked_latency_ms"] else ""
        )
        precision = step.get("precision", "fp32")
        versus = (
            f" Against the dense model at fp32 ({step['dense_fp32_ms']:.2f} ms; the dense {precision} file "
            f"runs {step['dense_speedup_vs_fp32']:.2f}x faster): **{step['speedup_vs_dense_fp32']:.2f}x**."
            if "speedup_vs_dense_fp32" in step
            else ""
        )
        lines += [
            f"{head} on {step['runtime']} {precision}, batch {step['batch']}, {step['threads']} thread(s): "
            f"asked {asked} against the dense model at {precision}, measured "
            f"**{step['measured_speedup']:.2f}x** in 3 of 4 rounds "
            f"(median {step.get('median_speedup', step['measured_speedup']):.2f}x: "
            f"{step['dense_ms']:.2f} → {step['pruned_ms']:.2f} ms) "
            f"after {len(step['iterations'])} candidate(s); {step['conv_latencies_measured']} conv latencies "
            f"measured.{versus} Widths per group: "
            + ", ".join(f"{k} {v}" for k, v in step["widths"].items())
            + ".",
            "",
        ]
    return lines


def _onnx(r: Report) -> list[str]:
    o = r["onnx"]
    if not o:
        return []
    return [
        f"ONNX: `{o['path']}`, dynamic batch; onnxruntime parity at batches {o['batches']}: "
        f"max abs diff {o['max_abs_diff']:.2e} (relative {o['max_rel_diff']:.2e})"
        + (f"; exported by torch's {o['exporter']} exporter" if o.get("exporter") else "")
        + (f" ({o['exporter_fallback']})." if o.get("exporter_fallback") else "."),
        "",
    ]


def _finetune(r: Report) -> list[str]:
    """The finetune line, with the from-scratch control's accuracy when it ran."""
    ft, sc = r["finetune"], r.get("scratch")
    if not ft["history"]:
        return []
    scratch = ""
    head = _metric_names(r)[0]
    if sc:  # its accuracy is None only where it was not evaluated (the ranks but 0 of a distributed run)
        top1 = "n/a" if sc["accuracy"] is None else f"{100 * sc['accuracy']:.2f}%"
        scratch = f" From-scratch control ({sc['epochs']} epochs): {head} {top1}."
    return [
        f"Finetune: recipe {ft.get('recipe')}, distillation {ft.get('distill')}, "
        f"{_n(len(ft['history']), 'epoch')}; "
        f"kept epoch {ft.get('kept_epoch')} (best validation {head})." + scratch,
        "",
    ]


def _layers(r: Report) -> list[str]:
    lines = ["## Layers", "", "| layer | channels before | after |", "|---|---:|---:|"]
    return lines + [f"| {x['name']} | {x['channels_before']} | {x['channels_after']} |" for x in r["layers"]]


def _machine(r: Report) -> list[str]:
    m = r["machine"]
    return [
        "",
        f"Machine: {m['cpu']} ({_n(m['cores'], 'core')}, {_n(m['torch_threads'], 'torch thread')}), "
        f"GPU: {m['gpu']}; "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, torch-pruning {m['torch_pruning']}.",
        f"Stage times (s): {', '.join(f'{k} {v:.1f}' for k, v in r['timings_s'].items())}.",
        "",
    ]


def _deployed(r: Report) -> list[str]:
    """The accuracy of each ONNX file, run by its runtime over the test split, beside PyTorch's."""
    dep = r.get("deployed")
    if not dep:
        return []
    torch_top1 = {"dense": r["dense"]["accuracy"], "pruned": r["pruned"]["accuracy"]}
    lines = [
        "## Accuracy of the deployed files (each file run over the test split)",
        "",
        "| file | variant | precision | runtime | top-1 | top-5 | PyTorch top-1 | int8 loss (points) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for f in dep["files"]:
        drop = f"{f['top1_drop_points']:.2f}" if "top1_drop_points" in f else ""
        ref = 100 * torch_top1.get(f["variant"], float("nan"))
        lines.append(
            f"| `{f['path']}` | {f['variant']} | {f['precision']} | {f['runtime']} | "
            f"{100 * f['top1']:.2f}% | {100 * f['top5']:.2f}% | {ref:.2f}% | {drop} |"
        )
    cal = dep.get("calibration")
    if cal:
        lines += [
            "",
            f"INT8: {cal.get('method')}; {cal.get('images')} calibration images "
            f"({cal.get('source')}, seed {cal.get('seed')}). An INT8 file losing more than "
            f"{dep['max_int8_drop']:g} top-1 points against its fp32 file is flagged.",
        ]
    lines += [""] + [f"**Warning:** {w}." for w in dep["warnings"]] + ([""] if dep["warnings"] else [])
    return lines


def _latency(r: Report) -> list[str]:
    if not r["latency"]:
        return []
    has_masked = "masked_ms" in r["latency"][0]
    mcols = (" masked ms | masked speedup |", "---:|---:|") if has_masked else ("", "")
    busy = next((row.get("machine_busy") for row in r["latency_rows"] if row.get("machine_busy")), "")
    lines = (
        ["## Latency (median of interleaved runs)", ""]
        + ([quiet.warning({"busy": True, "why": busy}), ""] if busy else [])
        + [
            "Precision: what the runtime computed in (int8: the quantized files); speedup against dense "
            "at the same precision, and against dense fp32 on the same runtime.",
            "",
            "| runtime | device | precision | batch | dense ms | pruned ms | speedup | vs dense fp32 | "
            f"efficiency |{mcols[0]}",
            f"|---|---|---|---:|---:|---:|---:|---:|---:|{mcols[1]}",
        ]
    )
    for row in r["latency"]:
        eff = row["speedup"] / r["theoretical_speedup"]
        vs = row.get("speedup_vs_dense_fp32")
        vs_text = f"{vs:.2f}x" if isinstance(vs, (int, float)) else ""
        extra = f" {row['masked_ms']:.2f} | {row['masked_speedup']:.2f}x |" if has_masked else ""
        lines.append(
            f"| {row['runtime']} | {row['device']} | {row.get('precision', 'fp32')} | "
            f"{row['batch_size']} | {row['dense_ms']:.2f} | {row['pruned_ms']:.2f} | "
            f"{row['speedup']:.2f}x | {vs_text} | {eff:.2f} |{extra}"
        )
    return lines + [""]


def write_report(report: Report, folder: Path) -> None:
    """report.json, report.md and the run's figures: kept channels per layer, and (when timed) latency vs
    batch size and measured vs theoretical speedup, as ``filterprune bench`` draws them."""
    atomic_write_json(Path(folder) / FILE, report)
    atomic_write_bytes(Path(folder) / "report.md", markdown(report).encode())
    kept_channels_figure(report, Path(folder) / "kept_channels.png")
    if report["latency_rows"]:
        import pandas as pd  # heavy: only for the figures

        plot(pd.DataFrame(report["latency_rows"], columns=COLUMNS), Path(folder))


def kept_channels_figure(report: Report, path: Path) -> None:
    """Dense widths as grey bars, the pruned model's as a line, one point per pruned layer."""
    import matplotlib  # heavy: only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    if not layers:
        return
    fig, ax = plt.subplots(figsize=(min(max(6.4, 0.22 * len(layers) + 2), 40), 3.6))
    xs = range(len(layers))
    ax.bar(xs, [r["channels_before"] for r in layers], color="lightgray", label="dense")
    ax.plot(xs, [r["channels_after"] for r in layers], marker="o", markersize=3, label="pruned")
    if len(layers) <= 180:  # beyond that the names overlap anyway
        ax.set_xticks(list(xs))
        ax.set_xticklabels([r["name"] for r in layers], rotation=90, fontsize=6)
    ax.set(
        ylabel="output channels", title=f"Kept channels: {portable(report['model'])}, {report['criterion']}"
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

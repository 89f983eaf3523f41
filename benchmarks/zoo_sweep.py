"""Every torchvision classifier through prune (l1, 40%) -> ONNX -> onnxruntime parity.

    PYTHONPATH=$PWD python benchmarks/zoo_sweep.py [--timeout 240] [--models a,b] [--fresh]
    PYTHONPATH=$PWD python benchmarks/zoo_sweep.py --recheck --models a,b   # stored rows still hold?

Each model runs in its own subprocess under a time limit, so a crash, a hang or memory exhaustion
fails that row, not the sweep. Weights are random (no download); weights that torchvision initialises
to exactly zero (ViT heads, for one) are redrawn, or parity would compare zeros with zeros. Input side:
torchvision's ``min_size`` for the model, at least 64. Rows accumulate in ``zoo/results.jsonl`` (a
rerun continues where it stopped; ``--fresh`` starts over) and ``zoo/zoo_sweep.md`` is rewritten from
them with the machine description at the end of every run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "zoo"
SPARSITY, CRITERION, NUM_CLASSES, MIN_SIDE = 0.4, "l1", 1000, 64


def input_side(name: str, model) -> int:
    """The side a ViT was built for; else torchvision's ``min_size``, at least 64; 224 where an adaptive pool has a fixed output larger than
    1x1 (AlexNet's 6x6, VGG's 7x7): the TorchScript exporter only writes one whose output size divides
    its input size, and at 224 it is an identity."""
    import torch.nn as nn
    import torchvision

    weights = list(torchvision.models.get_model_weights(name))
    h, w = weights[0].meta.get("min_size", (1, 1)) if weights else (1, 1)
    fixed_pool = any(
        isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1)) for m in model.modules()
    )
    if isinstance(
        getattr(model, "image_size", None), int
    ):  # ViT: built for one side (vit_h_14's weights use 518)
        return model.image_size
    return max(h, w, 224 if fixed_pool else MIN_SIDE)


def run_one(name: str) -> dict:
    """The child: one model, stages announced on stderr so a timeout can say where it stopped."""
    import tempfile

    import torch

    from filterprune.benchmarking.counting import count
    from filterprune.criteria import PruneContext, make_criterion
    from filterprune.exporting.convert import check_parity, to_proto
    from filterprune.models import ModelSpec, build_model
    from filterprune.pruning import PlanConfig, prune

    def stage(s):
        print(f"stage: {s}", file=sys.stderr, flush=True)

    torch.manual_seed(0)
    stage("build")
    model = build_model(ModelSpec(f"tv:{name}", NUM_CLASSES, 3, MIN_SIDE)).eval()  # the side is not used
    side = input_side(name, model)
    shape = (3, side, side)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0, 0.02)
    dense = count(model, shape)
    stage("prune (building the dependency graph, scoring, removing channels)")
    result = prune(
        model,
        make_criterion(CRITERION),
        PlanConfig(SPARSITY),
        PruneContext(torch.randn(1, *shape)),
        NUM_CLASSES,
    )
    pruned = count(model, shape)
    stage("ONNX export and checker")
    proto = to_proto(model, shape)
    stage("onnxruntime parity at batch 1 and 7")
    with tempfile.TemporaryDirectory() as tmp:  # a file, not bytes: protobuf refuses >2 GB in memory
        path = Path(tmp) / "m.onnx"
        path.write_bytes(proto.SerializeToString())
        parity = check_parity(model, path, shape)
    return {
        "input": side,
        "dense_macs": dense.macs,
        "pruned_macs": pruned.macs,
        "dense_params": dense.params,
        "pruned_params": pruned.params,
        "max_abs_diff": parity["max_abs_diff"],
        "max_rel_diff": parity["max_rel_diff"],
        "output_scale": parity["output_scale"],
        "unprunable": result.unprunable,
    }


def child_main(name: str) -> int:
    from filterprune.errors import FilterpruneError

    try:
        row = {"status": "ok", **run_one(name)}
    except FilterpruneError as e:
        row = {"status": "failed", "reason": str(e)}
    except Exception as e:
        row = {"status": "failed", "reason": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"}
    print(json.dumps(row))
    return 0


def sweep_one(name: str, timeout: int) -> dict:
    t = time.perf_counter()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        p = subprocess.run(
            [sys.executable, __file__, "--one", name],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if lines:
            row = json.loads(lines[-1])
        else:
            last = [ln for ln in p.stderr.splitlines() if ln.strip()][-1:] or ["no output"]
            row = {"status": "failed", "reason": f"process died (exit {p.returncode}): {last[0][:300]}"}
    except subprocess.TimeoutExpired as e:
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        stages = [ln[7:] for ln in err.splitlines() if ln.startswith("stage: ")]
        row = {
            "status": "failed",
            "reason": f"timed out after {timeout} s during {stages[-1] if stages else 'start-up'}",
        }
    return {"model": name, **row, "seconds": round(time.perf_counter() - t, 1)}


def _m(x) -> str:
    return f"{x / 1e6:,.1f}M" if isinstance(x, (int, float)) else ""


def write_table(rows: list[dict], args_line: str, missing: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from filterprune.benchmarking.machine import describe

    ok = [r for r in rows if r["status"] == "ok"]
    lines = [
        "# torchvision zoo: prune (l1, channel sparsity 0.4, random weights) -> ONNX -> parity",
        "",
        f"Command: `{args_line}`",
        "",
        f"**{len(ok)} of {len(rows)} pass ({100 * len(ok) / max(1, len(rows)):.1f}%)**: pruned, exported "
        "(opset 17, dynamic batch, full checker) and equal to PyTorch in onnxruntime at batch 1 and 7 "
        "(max|diff| / max(1, max|y|) <= 1e-4).",
        "",
        "'diff / scale' is max|diff| / max|y|: random weights make some models' logits tiny "
        "(EfficientNet's are ~1e-15), where the max(1, ...) bound alone would prove little.",
        "",
        "MACs at the listed input side. 'left whole' counts channel groups whose removal broke the model's "
        "forward; they stay dense and are named in results.jsonl.",
        "",
        "| model | input | result | MACs dense | MACs pruned | x | max abs diff | output scale | diff / scale | left whole | s | reason |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        x = f"{r['dense_macs'] / r['pruned_macs']:.2f}" if r["status"] == "ok" else ""
        diff = f"{r['max_abs_diff']:.1e}" if r["status"] == "ok" else ""
        scale = f"{r['output_scale']:.2g}" if r["status"] == "ok" else ""
        ratio = (
            f"{r['max_abs_diff'] / r['output_scale']:.1e}"
            if r["status"] == "ok" and r["output_scale"]
            else ""
        )
        whole = len(r.get("unprunable", {})) if r["status"] == "ok" else ""
        reason = r.get("reason", "").replace("|", "\\|")
        lines.append(
            f"| {r['model']} | {r.get('input', '')} | {r['status']} | {_m(r.get('dense_macs'))} | "
            f"{_m(r.get('pruned_macs'))} | {x} | {diff} | {scale} | {ratio} | {whole} | {r['seconds']} | {reason} |"
        )
    if missing:
        lines += [
            "",
            f"**Not run yet ({len(missing)})**: {', '.join(missing)}. The same command continues "
            "where the sweep stopped.",
        ]
    lines += ["", f"Machine: `{json.dumps(describe())}`", ""]
    tmp = HERE / ".zoo_sweep.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, HERE / "zoo_sweep.md")


def recheck(names: list[str], timeout: int) -> int:
    """After a change to the pruning code: do stored rows still hold? Exit 1 if any differs."""
    stored = {}
    for ln in (HERE / "results.jsonl").read_text().splitlines():
        r = json.loads(ln)
        stored[r["model"]] = r
    keys = ("status", "dense_macs", "pruned_macs")
    differ = 0
    for name in names:
        new, old = sweep_one(name, timeout), stored.get(name, {})
        same = all(new.get(k) == old.get(k) for k in keys) and len(new.get("unprunable", {})) == len(
            old.get("unprunable", {})
        )
        differ += not same
        print(
            f"{name}: {'same' if same else 'DIFFERS'} (pruned MACs {old.get('pruned_macs')} -> {new.get('pruned_macs')}, "
            f"left whole {len(old.get('unprunable', {}))} -> {len(new.get('unprunable', {}))}; {new['seconds']} s, "
            f"load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    return 1 if differ else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=int, default=240, help="seconds per model")
    ap.add_argument("--models", default=None, help="comma-separated subset (default: every classifier)")
    ap.add_argument("--fresh", action="store_true", help="forget earlier rows")
    ap.add_argument(
        "--table-only", action="store_true", help="rewrite zoo_sweep.md from results.jsonl, run nothing"
    )
    ap.add_argument(
        "--redo-failed", action="store_true", help="run the failed rows again (e.g. with a longer --timeout)"
    )
    ap.add_argument(
        "--recheck",
        action="store_true",
        help="run --models again and say whether MACs and left-whole groups equal the stored rows; writes nothing",
    )
    a = ap.parse_args()
    if a.one:
        return child_main(a.one)
    if a.recheck:
        return recheck(a.models.split(",") if a.models else [], a.timeout)
    import torchvision

    names = (
        a.models.split(",") if a.models else sorted(torchvision.models.list_models(module=torchvision.models))
    )
    HERE.mkdir(exist_ok=True)
    store = HERE / "results.jsonl"
    if a.fresh:
        store.unlink(missing_ok=True)
    done = {}
    if store.exists():
        for ln in store.read_text().splitlines():
            r = json.loads(ln)
            if not (a.redo_failed and r["status"] == "failed" and r["model"] in names):
                done[r["model"]] = r
    for i, name in enumerate(names):
        if name in done or a.table_only:
            continue
        row = sweep_one(name, a.timeout)
        done[name] = row
        with store.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"[{i + 1}/{len(names)}] {name}: {row['status']} {row.get('reason', '')} ({row['seconds']} s; "
            f"load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    rows = [done[n] for n in sorted(done)]
    args = [f"--timeout {a.timeout}"] if a.table_only else sys.argv[1:]
    missing = [n for n in names if n not in done]
    write_table(rows, " ".join(["PYTHONPATH=$PWD python benchmarks/zoo_sweep.py", *args]), missing)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())

"""timm models through prune (l1, 40%) -> ONNX -> onnxruntime parity, as zoo_sweep.py does for torchvision.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/timm_sweep.py [--timeout 240] [--models a,b] [--fresh]

Needs the optional extra (``pip install -e '.[timm]'``). Each model runs in its own subprocess under a
time limit, so a crash, a hang or memory exhaustion fails that row, not the sweep. Weights are random
(``timm.create_model(pretrained=False)``, nothing downloaded); weights initialised to exactly zero are
redrawn so parity does not compare zeros with zeros. Input side 64 (a ViT-style model is built for it with
``img_size=64``), else the model's native side when it does not run at 64. Rows accumulate in
``timm_models/results.jsonl`` (a rerun continues; ``--fresh`` starts over); ``timm_models/timm_sweep.md`` is rewritten
after every model. Not a timing benchmark: run it with OMP_NUM_THREADS=1 beside other work.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent / "timm_models"
SPARSITY, CRITERION, NUM_CLASSES, SIDE = 0.4, "l1", 1000, 64

# >= 50 architectures across families, the small member of each
MODELS = [
    # ResNet / ResNeXt and relatives
    "resnet18",
    "resnet50",
    "resnet26d",
    "resnext26ts",
    "seresnext26d_32x4d",
    "resnetv2_50",
    "skresnet18",
    "res2net50_14w_8s",
    "resnest14d",
    "cspresnet50",
    "cspdarknet53",
    "dpn68",
    "repvgg_a0",
    "selecsls42b",
    "gernet_s",
    "ese_vovnet19b_dw",
    # EfficientNet / MobileNet / NAS families
    "efficientnet_b0",
    "efficientnet_lite0",
    "tf_efficientnet_b0",
    "efficientnetv2_rw_t",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "mobilenetv4_conv_small",
    "mnasnet_100",
    "fbnetc_100",
    "spnasnet_100",
    "mixnet_s",
    "tinynet_a",
    "lcnet_050",
    "hardcorenas_a",
    # RegNet, ConvNeXt, GhostNet, ReXNet, DenseNet, DLA, HRNet, Inception
    "regnetx_002",
    "regnety_002",
    "regnetz_b16",
    "convnext_atto",
    "convnextv2_atto",
    "ghostnet_100",
    "ghostnetv2_100",
    "repghostnet_050",
    "rexnet_100",
    "densenet121",
    "dla34",
    "dla46_c",
    "hrnet_w18_small",
    "inception_v3",
    # attention, MLP and hybrid models
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "mobilevit_xxs",
    "edgenext_xx_small",
    "poolformer_s12",
    "levit_128s",
    "pit_ti_224",
    "fastvit_t8",
    "swin_tiny_patch4_window7_224",
    "resmlp_12_224",
    "mixer_s16_224",
    "efficientformer_l1",
    "coat_lite_tiny",
]


def _build(name: str, side: int, img_size: bool):
    """The model, checked to run at ``side``; ``img_size``: built for that side (ViT-style models)."""
    import torch

    from filterprune.models import ModelSpec, build_model

    model = build_model(
        ModelSpec(f"timm:{name}", NUM_CLASSES, 3, side, {"img_size": side} if img_size else {})
    ).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, side, side))
    return model


def run_one(name: str) -> dict:
    """The child: one model, stages announced on stderr so a timeout can say where it stopped."""
    import tempfile

    import torch

    from filterprune.benchmarking.counting import count
    from filterprune.criteria import PruneContext, make_criterion
    from filterprune.exporting.convert import check_parity, to_proto
    from filterprune.models import native_input
    from filterprune.pruning import PlanConfig, prune

    def stage(s):
        print(f"stage: {s}", file=sys.stderr, flush=True)

    torch.manual_seed(0)
    stage("build")
    side, model, how = SIDE, None, "64"
    for img_size in (False, True):  # as built; then built for 64 (img_size=64)
        try:
            model = _build(name, SIDE, img_size)
            how = "64 (img_size=64)" if img_size else "64"
            break
        except Exception:  # noqa: BLE001  (this side does not fit the model: try the next)
            continue
    if model is None:
        side = native_input(f"timm:{name}")["image_size"]
        model = _build(name, side, False)
        how = f"{side} (native)"
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0, 0.02)
    shape = (3, side, side)
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
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        path.write_bytes(proto.SerializeToString())
        parity = check_parity(model, path, shape)
    return {
        "input": how,
        "dense_macs": dense.macs,
        "pruned_macs": pruned.macs,
        "dense_params": dense.params,
        "pruned_params": pruned.params,
        "max_abs_diff": parity["max_abs_diff"],
        "output_scale": parity["output_scale"],
        "unprunable": result.unprunable,
    }


def child_main(name: str) -> int:
    try:
        row = {"status": "ok", **run_one(name)}
    except Exception as e:  # noqa: BLE001  (every failure is a row with its reason)
        row = {"status": "failed", "reason": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"}
    print(json.dumps(row))
    return 0


def sweep_one(name: str, timeout: int) -> dict:
    t = time.perf_counter()
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
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


def write_table(rows: list[dict], args_line: str, missing: list[str]) -> None:
    import timm

    from filterprune.benchmarking.machine import describe

    ok = [r for r in rows if r["status"] == "ok"]
    m = lambda x: f"{x / 1e6:,.1f}M" if isinstance(x, (int, float)) else ""  # noqa: E731
    lines = [
        f"# timm models: prune (l1, channel sparsity 0.4, random weights) -> ONNX -> parity (timm {timm.__version__})",
        "",
        f"Command: `{args_line}`",
        "",
        f"**{len(ok)} of {len(rows)} pass ({100 * len(ok) / max(1, len(rows)):.1f}%)**: pruned, exported (opset 17, "
        "dynamic batch, full checker) and equal to PyTorch in onnxruntime at batch 1 and 7 "
        "(max|diff| / max(1, max|y|) <= 1e-4). Every failure is named with its reason.",
        "",
        "'left whole' counts channel groups left dense (opaque reshapes, or removal broke the forward); "
        "they are named in results.jsonl.",
        "",
        "'diff / scale' is max|diff| / max|y|: random weights make some models' logits tiny or huge "
        "(Inception-v3's reach 6e7), where the absolute difference alone would mislead.",
        "",
        "| model | input | result | MACs dense | MACs pruned | x | max abs diff | output scale | diff / scale | left whole | s | reason |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        good = r["status"] == "ok"
        x = f"{r['dense_macs'] / r['pruned_macs']:.2f}" if good else ""
        diff = f"{r['max_abs_diff']:.1e}" if good else ""
        scale = f"{r['output_scale']:.2g}" if good else ""
        ratio = f"{r['max_abs_diff'] / r['output_scale']:.1e}" if good and r["output_scale"] else ""
        whole = len(r.get("unprunable", {})) if good else ""
        reason = r.get("reason", "").replace("|", "\\|")
        lines.append(
            f"| {r['model']} | {r.get('input', '')} | {r['status']} | {m(r.get('dense_macs'))} | "
            f"{m(r.get('pruned_macs'))} | {x} | {diff} | {scale} | {ratio} | {whole} | {r['seconds']} | {reason} |"
        )
    if missing:
        lines += ["", f"**Not run yet ({len(missing)})**: {', '.join(missing)}. The same command continues."]
    lines += ["", f"Machine: `{json.dumps(describe())}`", ""]
    tmp = HERE / ".timm_sweep.md.tmp"
    tmp.write_text("\n".join(lines))
    os.replace(tmp, HERE / "timm_sweep.md")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=int, default=240, help="seconds per model")
    ap.add_argument("--models", default=None, help="comma-separated subset (default: the list in this file)")
    ap.add_argument("--fresh", action="store_true", help="forget earlier rows")
    ap.add_argument("--redo-failed", action="store_true", help="run the failed rows again")
    ap.add_argument(
        "--table-only", action="store_true", help="rewrite timm_sweep.md from results.jsonl, run nothing"
    )
    a = ap.parse_args()
    if a.one:
        return child_main(a.one)
    names = a.models.split(",") if a.models else MODELS
    HERE.mkdir(exist_ok=True)
    store = HERE / "results.jsonl"
    if a.fresh:
        store.unlink(missing_ok=True)
    done = {}
    for ln in store.read_text().splitlines() if store.exists() else []:
        r = json.loads(ln)
        if not (a.redo_failed and r["status"] == "failed" and r["model"] in names):
            done[r["model"]] = r
    args_line = "PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/timm_sweep.py " + " ".join(sys.argv[1:])
    if a.table_only:
        args_line = (
            "PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/timm_sweep.py --timeout 180, then the same "
            "with --redo-failed --timeout 600"
        )
    for name in names if not a.table_only else []:
        if name in done:
            continue
        row = sweep_one(name, a.timeout)
        done[name] = row
        with open(store, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{name}: {row['status']} {row.get('reason', '')[:120]} ({row['seconds']} s)", flush=True)
        write_table([done[n] for n in names if n in done], args_line, [n for n in names if n not in done])
    write_table([done[n] for n in names if n in done], args_line, [])
    ok = sum(done[n]["status"] == "ok" for n in names)
    print(f"{ok} of {len(names)} pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())

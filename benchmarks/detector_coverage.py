"""Every torchvision detection and segmentation builder and the ultralytics YOLOv8/YOLO11 n-size models
through filterprune.prune (l1, 0.3) -> same output structure -> filterprune.export (ONNX) -> parity.

    PYTHONPATH=$PWD python benchmarks/detector_coverage.py [--timeout 420] [--models a,b] [--fresh]
    PYTHONPATH=$PWD python benchmarks/detector_coverage.py --smoke          # 2 models, into a temp folder

Each model runs in its own subprocess under a time limit and a resident-memory limit (the parent watches
it and kills its process group), so a crash, a hang or a memory blow-up fails that row, not the sweep.
Weights are random (``weights=None, weights_backbone=None``; YOLO built from its yaml), nothing is
downloaded: the child refuses every internet connection (and counts the attempts) and sets YOLO_OFFLINE.

What goes to ONNX is the network a deployer runs, without post-processing where there is such a network:
single-stage torchvision detectors (SSD, SSDlite, RetinaNet, FCOS) as ``filterprune.tasks.raw_detector``
(backbone + head, raw box regressions and class logits; anchors, decoding and NMS outside); YOLO with its
head in export mode, as ``yolo export format=onnx`` writes it (decoded boxes and scores, NMS outside);
segmentation models whole (their ``out`` dict). The two-stage R-CNNs have no such network (their second
stage pools the proposals the first stage's NMS chose), so the whole detector is exported on one image of
fixed size, NMS included, as torchvision documents it.

Each child runs with OMP_NUM_THREADS=1 unless the variable is set. Rows accumulate in
``detector_coverage/results.json`` (a rerun skips the models already there; ``--fresh`` starts over,
``--redo-failed`` reruns the failures); ``table.md`` and ``table.csv`` are rewritten after every model.
Not a timing benchmark: the seconds are wall time on whatever the machine was doing.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "detector_coverage"
CRITERION, SPARSITY = "l1", 0.3
DET_CLASSES, SEG_CLASSES = 10, 21  # keypoint R-CNN: 2 (background + person), as torchvision builds it
DET_SIDE = 320  # R-CNN, RetinaNet, FCOS: min_size = max_size = 320 (torchvision's default is 800/1333)
SEG_SIDE = 160
YOLO_SIDE = 320
FIXED_SIDE = {"ssd300_vgg16": 300, "ssdlite320_mobilenet_v3_large": 320}  # SSD resizes to its own size
YOLO = [f"yolo{v}n{t}.yaml" for v in ("v8", "11") for t in ("", "-seg", "-pose", "-obb")]
SMOKE = ["ssdlite320_mobilenet_v3_large", "yolov8n.yaml"]
FAMILIES = (
    ("fasterrcnn", "Faster R-CNN"),
    ("maskrcnn", "Mask R-CNN"),
    ("keypointrcnn", "Keypoint R-CNN"),
    ("retinanet", "RetinaNet"),
    ("fcos", "FCOS"),
    ("ssdlite", "SSDlite"),
    ("ssd", "SSD"),
    ("fcn", "FCN"),
    ("deeplabv3", "DeepLabV3"),
    ("lraspp", "LR-ASPP"),
    ("yolov8", "YOLOv8"),
    ("yolo11", "YOLO11"),
)
# what a failure was found to be, on inspection (shown under the table while the model fails)
NOTES: dict[str, str] = {}
COLUMNS = (
    "model", "family", "kind", "input", "status", "stage", "params_dense", "params_pruned", "macs_dense",
    "macs_pruned", "theoretical_speedup", "kept_channels", "left_whole", "structure_same", "onnx_ok",
    "exported", "exporter", "max_abs_diff", "max_rel_diff", "output_scale", "network_attempts", "seconds", "reason",
)  # fmt: skip


def family(name: str) -> str:
    base = next((f for key, f in FAMILIES if name.startswith(key)), "?")
    task = next((t for t in ("seg", "pose", "obb") if name.endswith(f"-{t}.yaml")), None)
    return f"{base} {task}" if task else base


# ------------------------------------------------------------------------------------------------- child
@dataclass
class Case:
    """One model as the sweep runs it: what it is called on, how the table names its input and its
    exported network, and ``deployable(pruned model) -> (network, example inputs)`` for the export."""

    model: Any
    example: Any
    kind: str
    input: str
    exported: str
    deployable: Callable


def _torchvision(name: str) -> Case:
    import torch
    import torchvision
    from torchvision.models import get_model

    from filterprune.tasks.raw_detector import raw_detector

    if name in torchvision.models.list_models(module=torchvision.models.segmentation):
        x = torch.rand(1, 3, SEG_SIDE, SEG_SIDE)
        model = get_model(name, weights=None, weights_backbone=None, num_classes=SEG_CLASSES).eval()
        return Case(model, x, "segmentation", str(SEG_SIDE), "whole model ('out')", lambda m: (m, x))
    kw: dict = {"weights": None, "weights_backbone": None}
    kw["num_classes"] = 2 if name.startswith("keypointrcnn") else DET_CLASSES
    side = FIXED_SIDE.get(name, DET_SIDE)
    if name not in FIXED_SIDE:
        kw.update(min_size=DET_SIDE, max_size=DET_SIDE)
    model = get_model(name, **kw).eval()
    image = torch.rand(3, side, side)
    where = f"{side} (fixed by the model)" if name in FIXED_SIDE else f"{side} (min_size = max_size)"
    if raw_detector(model) is not None:
        x = torch.rand(1, 3, side, side)
        return Case(model, [image], "single-stage", where, "raw head outputs", lambda m: (raw_detector(m), x))
    return Case(model, [image], "two-stage", where, "whole detector, NMS inside", lambda m: (m, [image]))


def _yolo(name: str) -> Case:
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.modules.head import Detect

    x = torch.rand(1, 3, YOLO_SIDE, YOLO_SIDE)

    def deployable(m):
        for head in m.modules():  # what ultralytics' own ONNX exporter sets
            if isinstance(head, Detect):
                head.export, head.format, head.shape = True, "onnx", None
        return m, x

    return Case(
        YOLO(name).model.eval(), x, "yolo", str(YOLO_SIDE), "export-mode head, NMS outside", deployable
    )


def offline() -> list:
    """Refuse every internet connection in this process; returns the list the attempts are added to."""
    import socket

    attempts: list = []

    def guard(real):
        def refused(self, address, *a):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                attempts.append(str(address))
                raise OSError(f"network refused by the coverage sweep (to {address})")
            return real(self, address, *a)

        return refused

    socket.socket.connect = guard(socket.socket.connect)  # type: ignore[method-assign]
    socket.socket.connect_ex = guard(socket.socket.connect_ex)  # type: ignore[method-assign]
    os.environ["YOLO_OFFLINE"] = "1"
    return attempts


def _random_but_scaled(model, example) -> None:
    """Weights initialised to exactly zero are redrawn, and every BatchNorm's running statistics are set
    from two random inputs: with its initial statistics a random deep network's activations vanish
    (SSDlite's last feature map reaches 1e-25), and parity would compare zeros with zeros."""
    import torch
    import torch.nn as nn

    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2 and not p.any():
                p.normal_(0, 0.02)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: exactly these inputs' statistics
        m.train()
    two = (
        [example[0], torch.rand_like(example[0])]
        if isinstance(example, list)
        else torch.rand(2, *example.shape[1:])
    )
    with torch.no_grad():
        model(two)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()


class Failed(Exception):
    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage = stage


def _prune(case: Case, row: dict) -> None:
    import torch

    import filterprune
    from filterprune.example import changed, structure

    with torch.no_grad():
        before = structure(case.model(case.example))
    stage(row, "prune")
    r = filterprune.prune(case.model, case.example, criterion=CRITERION, sparsity=SPARSITY)
    kept = sum(x["channels_after"] for x in r.layers) / max(1, sum(x["channels_before"] for x in r.layers))
    row.update(
        params_dense=r.dense["params"],
        params_pruned=r.pruned["params"],
        macs_dense=r.dense["macs"],
        macs_pruned=r.pruned["macs"],
        theoretical_speedup=round(r.theoretical_speedup, 3),
        kept_channels=round(kept, 3),
        left_whole=len(r.unprunable),
        left_whole_groups=dict(list(r.unprunable.items())[:20]),
    )
    stage(row, "structure")
    with torch.no_grad():
        after = structure(case.model(case.example))
    how = changed(before, after)
    row["structure_same"] = how is None
    if how is not None:
        raise Failed("structure", f"output structure changed: {how}")


def _export(case: Case, row: dict) -> None:
    import torch

    import filterprune
    from filterprune.errors import FilterpruneError
    from filterprune.example import as_example, leaves
    from filterprune.exporting.convert import PARITY_TOL, exporter_of

    stage(row, "export")
    net, example = case.deployable(case.model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:  # parity judged here (tol=inf), so a difference is reported with its size, not raised
            got = filterprune.export(net, path, example, tol=math.inf)
        except FilterpruneError as e:
            msg = str(e).splitlines()[0]
            raise Failed("parity" if msg.startswith("ONNX parity failed") else "export", msg) from None
        md = exporter_of(path)
    row.update(
        onnx_ok=True, exporter=md.get("exporter", ""), exporter_fallback=md.get("exporter_fallback", "")
    )
    row.update(outputs=got["outputs"], max_abs_diff=got["parity"]["max_abs_diff"])
    with torch.no_grad():
        row["output_scale"] = max(
            (float(t.abs().max()) for _, t in leaves(as_example(example)(net)) if t.numel()), default=0.0
        )
    row["max_rel_diff"] = rel = got["parity"]["max_rel_diff"]
    stage(row, "parity")
    if not rel <= PARITY_TOL:
        raise Failed(
            "parity", f"max |onnx - torch| {row['max_abs_diff']:.3g}, relative {rel:.3g} > {PARITY_TOL}"
        )


def stage(row: dict, name: str) -> None:
    """Announce a stage on stderr (the parent names it when the child dies or times out) and time it."""
    now = time.perf_counter()
    if row.get("stage"):
        row["stage_seconds"][row["stage"]] = round(now - row["_t"], 1)
    row.update(stage=name, _t=now)
    print(f"stage: {name}", file=sys.stderr, flush=True)


def run_one(name: str) -> dict:
    """The child: one model through every stage; a failure names its stage and a one-line reason."""
    attempts = offline()
    row: dict = {"model": name, "family": family(name), "stage_seconds": {}, "stage": ""}
    stage(row, "build")
    failed: tuple[str, str] | None = None
    try:
        import torch

        torch.manual_seed(0)
        case = _yolo(name) if name.endswith(".yaml") else _torchvision(name)
        row.update(kind=case.kind, input=case.input, exported=case.exported)
        _random_but_scaled(case.model, case.example)
        _prune(case, row)
        _export(case, row)
    except Failed as e:
        failed = e.stage, str(e)
    except Exception as e:  # noqa: BLE001  (every failure is a row with its reason)
        failed = row["stage"], f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
    row["stage_seconds"][row["stage"]] = round(time.perf_counter() - row.pop("_t"), 1)
    row["network_attempts"] = len(attempts)
    if failed is None:
        return {**row, "status": "ok", "stage": ""}
    if failed[0] == "parity":
        row["onnx_ok"] = True  # written and checked; only the numbers (or shapes) differ
    return {**row, "status": "failed", "stage": failed[0], "reason": failed[1][:300]}


# ------------------------------------------------------------------------------------------------ parent
def run_child(
    cmd: list[str], timeout: float, max_rss_mb: float, poll: float = 0.25, env: dict | None = None
) -> dict | None:
    """Run ``cmd`` in its own process group; None when it ended by itself, else the failure row (killed
    at ``timeout`` seconds or when its resident memory, children included, passes ``max_rss_mb``)."""
    import signal

    import psutil

    with tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, env=env)
        proc, start, why = psutil.Process(p.pid), time.monotonic(), None
        while p.poll() is None and why is None:
            time.sleep(poll)
            if time.monotonic() - start > timeout:
                why = f"timed out after {timeout:g} s"
            elif _rss_mb(proc) > max_rss_mb:
                why = f"killed: resident memory over {max_rss_mb:g} MB"
        if why is not None:
            os.killpg(p.pid, signal.SIGKILL)  # the group this call started, by its id
            p.wait()
        err.seek(0)
        lines = [ln for ln in err.read().splitlines() if ln.strip()]
    stages = [ln[7:] for ln in lines if ln.startswith("stage: ")]
    if why is None and p.returncode == 0:
        return None
    if why is None:
        why = f"process died (exit {p.returncode}): {(lines[-1:] or ['no output'])[0][:200]}"
    return {"status": "failed", "stage": stages[-1] if stages else "start-up", "reason": why}


def _rss_mb(proc) -> float:
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
        return sum(q.memory_info().rss for q in procs) / 2**20
    except psutil.Error:
        return 0.0


def sweep_one(name: str, timeout: float, max_rss_mb: float) -> dict:
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        # one thread unless told: on a 2-core machine shared with other jobs, two OpenMP threads made
        # the same child 5-8x slower (SSDlite: 45 s against 6 s)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        cmd = [sys.executable, __file__, "--one", name, "--row", str(out)]
        failed = run_child(cmd, timeout, max_rss_mb, env=env)
        if failed is None and not out.exists():
            failed = {"status": "failed", "stage": "start-up", "reason": "the child wrote no row"}
        row = failed or json.loads(out.read_text())
    return {"model": name, "family": family(name), **row, "seconds": round(time.perf_counter() - t, 1)}


def load(out: Path) -> dict[str, dict]:
    path = out / "results.json"
    return {r["model"]: r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}


def stored_command(out: Path) -> str:
    path = out / "results.json"
    return json.loads(path.read_text()).get("command", "") if path.exists() else ""


def sweep(
    names: list[str], out: Path, run: Callable[[str], dict], fresh=False, redo_failed=False, command=""
):
    """Run every model of ``names`` not yet in ``out/results.json`` (all with ``fresh``; the failed ones
    again with ``redo_failed``) through ``run``; rewrites results.json, table.md and table.csv after each."""
    out.mkdir(parents=True, exist_ok=True)
    done = {} if fresh else load(out)
    if redo_failed:
        done = {n: r for n, r in done.items() if r["status"] == "ok" or n not in names}
    for i, name in enumerate(names):
        if name in done:
            continue
        done[name] = row = run(name)
        print(
            f"[{i + 1}/{len(names)}] {name}: {row['status']} {row.get('stage', '')} "
            f"{row.get('reason', '')[:150]} ({row['seconds']} s; load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        write(out, done, names, command)
    write(out, done, names, command)
    return done


# ------------------------------------------------------------------------------------------------ output
def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write(out: Path, done: dict[str, dict], names: list[str], command: str) -> None:
    rows = [done[n] for n in names if n in done] + [r for n, r in done.items() if n not in names]
    _atomic(out / "results.json", json.dumps({"command": command, "rows": rows}, indent=1) + "\n")
    with open(out / ".table.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(out / ".table.csv.tmp", out / "table.csv")
    _atomic(out / "table.md", markdown(rows, [n for n in names if n not in done], command))


def _m(x, unit=1e6) -> str:
    return f"{x / unit:,.2f}" if isinstance(x, (int, float)) else ""


def _row_md(r: dict) -> str:
    x = r.get("theoretical_speedup")
    diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else ""
    scale = f"{r['output_scale']:.2g}" if "output_scale" in r else ""
    cells = [
        r["model"], r.get("family", ""), r.get("input", ""), r["status"], r.get("stage", ""),
        f"{_m(r.get('params_dense'))} → {_m(r.get('params_pruned'))}" if "params_pruned" in r else "",
        f"{_m(r.get('macs_dense'), 1e9)} → {_m(r.get('macs_pruned'), 1e9)}" if "macs_pruned" in r else "",
        f"{x:.2f}" if x else "", f"{r['kept_channels']:.2f}" if "kept_channels" in r else "",
        str(r.get("left_whole", "")), "yes" if r.get("onnx_ok") else ("no" if "kind" in r else ""),
        r.get("exported", ""), r.get("exporter", ""), diff, scale, f"{r['seconds']:.0f}",
        r.get("reason", "").replace("|", "\\|"),
    ]  # fmt: skip
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(rows: list[dict], missing: list[str], command: str) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    by_stage: dict[str, int] = {}
    for r in rows:
        if r["status"] != "ok":
            by_stage[r.get("stage") or "?"] = by_stage.get(r.get("stage") or "?", 0) + 1
    lines = [
        f"# Detectors and segmenters: prune ({CRITERION}, {SPARSITY}) -> same outputs -> ONNX -> parity",
        "",
        f"Command: `{command}`",
        "",
        f"**{len(ok)} of {len(rows)} pass**"
        + (f"; failed at: {', '.join(f'{s} {n}' for s, n in by_stage.items())}" if by_stage else "")
        + ". Pass: `filterprune.prune(model, example_inputs, criterion='l1', sparsity=0.3)` ran, the model "
        "returns the same output structure (nesting, keys, shapes past the first axis), "
        "`filterprune.export` wrote a checked ONNX file and onnxruntime equals PyTorch on every output "
        "(max|diff| / max(1, max|y|) <= 1e-4; where the input is one image batch, at batch 1 and 7 on random "
        "[0, 1] images, else on the example itself).",
        "",
        "Random weights, no download; weights initialised to exactly zero redrawn and every BatchNorm's "
        "running statistics set from two random inputs (else a random deep network's activations vanish, "
        "1e-25 at SSDlite's last map, and parity would compare zeros). torchvision: `weights=None, "
        f"weights_backbone=None`, {DET_CLASSES} "
        f"classes for detectors (keypoint R-CNN 2), {SEG_CLASSES} for segmentation; R-CNN, RetinaNet and "
        f"FCOS built with `min_size=max_size={DET_SIDE}`, SSD at its fixed 300, SSDlite at 320, segmentation "
        f"at {SEG_SIDE}; the detectors are pruned on a list of one image (their calling convention), the "
        f"segmenters on a 1x3x{SEG_SIDE}x{SEG_SIDE} batch. ultralytics: `YOLO('<name>.yaml').model` "
        f"(the yaml's classes), pruned and exported at {YOLO_SIDE}.",
        "",
        "Exported network: *raw head outputs* = backbone + head of a single-stage detector "
        "(`filterprune.tasks.raw_detector`: (N, anchors, 4 [+1 centerness] + classes), anchors, decoding "
        "and NMS outside); *export-mode head* = YOLO as `yolo export format=onnx` writes it (decoded boxes "
        "and class scores [+ mask coefficients and protos, keypoints, angle]; NMS outside); *whole "
        "detector* = a two-stage R-CNN on one image of fixed size, RPN, RoI heads and NMS inside (there is "
        "no network without post-processing: the second stage pools the proposals the first stage's NMS "
        "chose); *whole model* = a segmenter and its `out` dict.",
        "",
        "MACs (G) and parameters (M) as `filterprune.prune` counts them for the call (a two-stage "
        "detector's include its RoI heads over the proposals and detections the random weights produced). "
        "'kept ch' = channels kept / channels before over the pruned layers; 'left whole' = channel groups "
        "left dense (named in results.json). Seconds are wall time (one thread per model, "
        "`OMP_NUM_THREADS=1`) on a shared machine, not a timing.",
        "",
        "| model | family | input | result | failed at | params M | MACs G | x | kept ch | left whole "
        "| ONNX | exported | exporter | max abs diff | output scale | s | reason |",
        "|---|---|---|---|---|---|---|---:|---:|---:|---|---|---|---:|---:|---:|---|",
        *map(_row_md, rows),
    ]
    notes = [
        f"- **{r['model']}**: {NOTES[r['model']]}"
        for r in rows
        if r["status"] != "ok" and r["model"] in NOTES
    ]
    lines += ["", "Failures, inspected:", "", *notes] if notes else []
    fallbacks = sorted({r["exporter_fallback"] for r in rows if r.get("exporter_fallback")})
    lines += (
        ["", f"Exporter: TorchScript where the file says so, because {'; '.join(fallbacks)}."]
        if fallbacks
        else []
    )
    lines += ["", f"Wall time: {sum(r['seconds'] for r in rows) / 60:.0f} min (the rows' seconds added up)."]
    if missing:
        lines += ["", f"**Not run yet ({len(missing)})**: {', '.join(missing)}. The same command continues."]
    return "\n".join([*lines, "", f"Machine: `{json.dumps(_machine())}`", ""])


def _machine() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from filterprune.benchmarking.machine import describe

    info = describe()
    for pkg in ("torchvision", "ultralytics"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    return info


def all_models() -> list[str]:
    import torchvision

    tv = torchvision.models
    return sorted(tv.list_models(module=tv.detection)) + sorted(tv.list_models(module=tv.segmentation)) + YOLO


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--row", help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=420, help="seconds per model (default 420)")
    ap.add_argument("--max-rss-mb", type=float, default=8192, help="resident memory per model (default 8192)")
    ap.add_argument("--models", default=None, help="comma-separated subset (default: every builder)")
    ap.add_argument("--smoke", action="store_true", help=f"only {', '.join(SMOKE)}, into a temp folder")
    ap.add_argument("--out", type=Path, default=None, help=f"folder (default {HERE}; --smoke: a temp folder)")
    ap.add_argument("--fresh", action="store_true", help="forget earlier rows")
    ap.add_argument("--redo-failed", action="store_true", help="run the failed rows again")
    ap.add_argument("--table-only", action="store_true", help="rewrite table.md/.csv from results.json")
    a = ap.parse_args()
    if a.one:
        Path(a.row).write_text(json.dumps(run_one(a.one)))
        return 0
    names = a.models.split(",") if a.models else SMOKE if a.smoke else all_models()
    out = a.out or (Path(tempfile.gettempdir()) / "detector_coverage_smoke" if a.smoke else HERE)
    command = "PYTHONPATH=$PWD python benchmarks/detector_coverage.py " + " ".join(sys.argv[1:])
    if a.table_only:
        write(out, load(out), names, stored_command(out))
        return 0
    t = time.perf_counter()
    done = sweep(names, out, lambda n: sweep_one(n, a.timeout, a.max_rss_mb), a.fresh, a.redo_failed, command)
    ok = sum(done[n]["status"] == "ok" for n in names)
    print(f"{ok} of {len(names)} pass; {time.perf_counter() - t:.0f} s; {out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    raise SystemExit(main())

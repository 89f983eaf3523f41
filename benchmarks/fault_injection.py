"""Fault injection: SIGKILL `filterprune compress` at chosen points and at random moments, then rerun it.

For every kill we check what a user would find, then rerun the same command and check again:

* nothing that looks complete: the output folder is absent, or (killed after publishing) complete;
* nothing earlier lost: an earlier run's folder and another baseline in the cache are byte-identical;
* the rerun exits 0, and its pruned weights, pruning history and accuracies equal an uninterrupted run's
  (killed after the folder was published: the result is already complete and equal, and the rerun
  refuses to overwrite it, exit 2);
* no staging folder, temporary file or damaged cache entry is left behind after the rerun.

The chosen points patch one function in the child process so that it kills itself (SIGKILL: no
``finally``, no cleanup) at an exact place: mid-epoch in baseline training and in finetuning, halfway
through writing the cached baseline, mid-pruning, while writing the pruned checkpoint, during ONNX
export and parity, during the benchmark, between report.json and report.md, just before the output
folder is published, between the two renames of ``--overwrite``. Random kills come on top.

    python benchmarks/fault_injection.py                 # all points + 6 random kills -> benchmarks/faults/
    python benchmarks/fault_injection.py --random 0 --points prune,publish   # a subset (the slow test)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "cifar10_mini.npz"
ARGS = [
    "compress",
    "resnet20",
    "--criterion",
    "l1",
    "--sparsity",
    "0.4",
    "--dataset",
    "npz:{data}",
    "--epochs",
    "2",
    "--finetune-epochs",
    "1",
    "--bench-iters",
    "3",
    "--bench-batch-sizes",
    "1,4",
    "--seed",
    "0",
    "--out",
    "runs/target",
]

# name -> (dotted function to wrap, which call kills, how, baseline already cached, extra flags)
# how: "before" kills on entry; "after" once the call returned; "torn" writes half of the file first.
POINTS = {
    "baseline-training": ("torch.optim.SGD.step", 3, "before", False, []),
    "baseline-cache-torn": ("filterprune.serialization.save_file", 1, "torn", False, []),
    "baseline-cache-publish": ("filterprune.outputs.publish", 1, "before", False, []),
    "prune": ("torch_pruning.dependency.group.Group.prune", 4, "before", True, []),
    "finetune": ("torch.optim.SGD.step", 2, "before", True, []),
    "pruned-checkpoint-torn": ("filterprune.serialization.save_file", 1, "torn", True, []),
    "onnx-export": ("torch.onnx.export", 1, "after", True, []),
    "onnx-parity": ("filterprune.exporting.convert.session", 1, "before", True, []),
    "bench": ("filterprune.benchmarking.timing.interleaved", 1, "before", True, []),
    "report-md": ("filterprune.reporting.run_report.atomic_write_bytes", 1, "before", True, []),
    "publish": ("filterprune.outputs.publish", 1, "before", True, []),
    "overwrite-between-renames": ("os.replace", -1, "overwrite", True, ["--overwrite"]),
}


# ------------------------------------------------------------------------------------ child side
def _kill():
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install(target: str, nth: int, how: str) -> None:
    """Wrap ``target`` so that its ``nth`` call SIGKILLs this process (``how`` says where)."""
    import importlib

    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            continue
    for attr in parts[i:-1]:
        owner = getattr(owner, attr)
    real, calls = getattr(owner, parts[-1]), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if how == "overwrite":  # os.replace(old out, aside) done, staging not yet moved in
            result = real(*args, **kwargs)
            if ".replaced-" in str(args[1]):
                _kill()
            return result
        if calls[0] != nth:
            return real(*args, **kwargs)
        if how == "before":
            _kill()
        result = real(*args, **kwargs)
        if how == "torn":  # save_file(tensors, path): leave half of it, as a crash mid-write would
            path = Path(args[1] if len(args) > 1 else kwargs["filename"])
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        _kill()
        return result

    setattr(owner, parts[-1], wrapper)


def child(point: str, argv: list[str]) -> None:
    target, nth, how, _, _ = POINTS[point]
    if point in ("onnx-export",):
        import torch.onnx  # noqa: F401  (make sure the attribute exists before wrapping)
    import filterprune.api  # noqa: F401  (everything imported, so the wrapper replaces the real thing)

    _install(target, nth, how)
    from filterprune.cli import main

    raise SystemExit(main(argv))


# ----------------------------------------------------------------------------------- driver side
def _digest(folder: Path) -> dict[str, str]:
    return (
        {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
        if folder.exists()
        else {}
    )


def _leftovers(ws: Path) -> list[str]:
    return sorted(
        str(p.relative_to(ws))
        for p in ws.rglob("*")
        if ".partial-" in p.name or ".replaced-" in p.name or p.name.endswith(".tmp")
    )


def _run(ws: Path, argv: list[str], point: str | None = None, kill_after: float | None = None):
    cmd = (
        [sys.executable, str(Path(__file__).resolve()), "--child", point, "--"]
        if point
        else [sys.executable, "-m", "filterprune"]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FILTERPRUNE_CACHE": str(ws / "cache")}
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [*cmd, *argv], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if kill_after is not None:
        try:
            p.wait(kill_after)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
    out, err = p.communicate()
    return p.returncode, err, time.perf_counter() - t0


def _read_report(run: Path) -> dict:
    """The run's report.json, read as every reader reads it (filterprune imported only here and at the end:
    the parent never holds what the children patch)."""
    sys.path.insert(0, str(ROOT))
    from filterprune.reporting.schema import read_report

    return read_report(run)


def _summary(run: Path) -> dict:
    r = _read_report(run)
    hist = json.loads((run / "pruned.json").read_text())["history"]
    return {
        "layers": r["layers"],
        "history": hist,
        "dense_acc": r["dense"]["accuracy"],
        "pruned_acc": r["pruned"]["accuracy"],
        "weights": hashlib.sha256((run / "pruned.safetensors").read_bytes()).hexdigest(),
    }


def _complete(run: Path) -> bool:
    need = {"model.onnx", "dense.onnx", "pruned.safetensors", "pruned.json", "report.json", "report.md"}
    if not need <= {p.name for p in run.iterdir()}:
        return False
    sys.path.insert(0, str(ROOT))
    import filterprune

    filterprune.load(run)  # digest-checked, pickle-free rebuild
    _read_report(run)
    return True


def make_data(path: Path) -> str:
    """128 train / 64 test images at 16x16: real CIFAR-10 (2x2-pooled) when ../shared/data has it."""
    if SHARED.is_file():
        with np.load(SHARED) as f:
            xtr, ytr, xte, yte = f["x_train"][:128], f["y_train"][:128], f["x_test"][:64], f["y_test"][:64]
        source = "CIFAR-10 subset"
    else:
        rng = np.random.default_rng(0)
        xtr = rng.integers(0, 256, (128, 3, 32, 32), np.uint8)
        xte = rng.integers(0, 256, (64, 3, 32, 32), np.uint8)
        ytr, yte, source = rng.integers(0, 10, 128), rng.integers(0, 10, 64), "random pixels"
    pool = lambda x: x.reshape(len(x), 3, 16, 2, 16, 2).mean((3, 5)).round().astype(np.uint8)  # noqa: E731
    np.savez(
        path, x_train=pool(xtr), y_train=ytr.astype(np.int64), x_test=pool(xte), y_test=yte.astype(np.int64)
    )
    return source


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default=",".join(POINTS), help="comma-separated fault points")
    ap.add_argument("--random", type=int, default=6, help="extra kills at random moments")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "faults"), help="where results.json/md go")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = Path(tempfile.mkdtemp(prefix="fp-faults-"))
    source = make_data(base / "data.npz")
    argv = [x.format(data=base / "data.npz") for x in ARGS]

    # the template every case starts from: an earlier run's results and another config's baseline
    tpl = base / "template"
    tpl.mkdir()
    (tpl / "data.npz").symlink_to(base / "data.npz")
    rc, err, _ = _run(tpl, [*argv[:-1], "runs/previous", "--seed", "1"])
    assert rc == 0, err
    ref_ws = base / "reference"
    shutil.copytree(tpl, ref_ws, symlinks=True)
    rc, err, clean_s = _run(ref_ws, argv)
    assert rc == 0, err
    reference = _summary(ref_ws / "runs" / "target")
    seed0_entries = set(os.listdir(ref_ws / "cache" / "baselines")) - set(
        os.listdir(tpl / "cache" / "baselines")
    )

    cases = [p for p in a.points.split(",") if p] + ["random"] * a.random
    results = []
    for i, point in enumerate(cases):
        cached = POINTS[point][3] if point != "random" else rng.random() < 0.5
        extra = POINTS[point][4] if point != "random" else []
        upper, delay = clean_s, None
        for _attempt in range(6):  # a random kill must land while the run is still going
            ws = base / f"case{i}"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(tpl, ws, symlinks=True)
            if cached:
                for key in seed0_entries:
                    shutil.copytree(ref_ws / "cache" / "baselines" / key, ws / "cache" / "baselines" / key)
            if extra == ["--overwrite"]:  # an earlier result of that name, which the user asked to replace
                shutil.copytree(ref_ws / "runs" / "target", ws / "runs" / "target")
            before = {
                "previous": _digest(ws / "runs" / "previous"),
                "cache": _digest(ws / "cache" / "baselines"),
            }
            delay = rng.uniform(1.0, upper) if point == "random" else None
            rc, err, killed_s = _run(
                ws, [*argv, *extra], None if point == "random" else point, kill_after=delay
            )
            if point != "random" or rc == -signal.SIGKILL:
                break
            upper = 0.9 * killed_s  # it finished first: aim inside the time it took
        stage = next(
            (
                ln.split("]")[1].split(":")[0].strip()
                for ln in reversed(err.splitlines())
                if ln.startswith("[filterprune]") and ":" in ln
            ),
            "start",
        )
        killed = rc == -signal.SIGKILL
        target = ws / "runs" / "target"
        after_kill = {
            "previous_intact": _digest(ws / "runs" / "previous") == before["previous"],
            "cache_entries_intact": all(
                _digest(ws / "cache" / "baselines").get(k) == v for k, v in before["cache"].items()
            ),
            "output_absent_or_complete": (not target.exists())
            or extra == ["--overwrite"]
            or _complete(target),
        }
        # killed after the folder was published: the result is complete, and a rerun must refuse to touch it
        published = target.exists() and extra != ["--overwrite"]
        rc2, err2, rerun_s = _run(ws, [*argv, *extra])
        ok2 = (rc2 == 2 and "exists" in err2 if published else rc2 == 0) and _complete(target)
        same = ok2 and _summary(target) == reference
        row = {
            "point": point,
            "delay_s": round(delay, 2) if delay else None,
            "killed": killed,
            "killed_rc": rc,
            "last_stage": stage,
            "killed_after_s": round(killed_s, 1),
            **after_kill,
            "published_before_kill": published,
            "rerun_rc": rc2,
            "rerun_complete": ok2,
            "rerun_equals_uninterrupted": same,
            "previous_intact_after_rerun": _digest(ws / "runs" / "previous") == before["previous"],
            "leftovers_after_rerun": _leftovers(ws),
            "traceback_seen": "Traceback" in err + err2,
            "rerun_s": round(rerun_s, 1),
        }
        row["survived"] = (
            row["previous_intact"]
            and row["cache_entries_intact"]
            and row["output_absent_or_complete"]
            and ok2
            and same
            and row["previous_intact_after_rerun"]
            and not row["leftovers_after_rerun"]
            and not row["traceback_seen"]
        )
        results.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(ws)

    sys.path.insert(0, str(ROOT))
    from filterprune.benchmarking.machine import describe

    summary = {
        "command": "filterprune " + " ".join(ARGS),
        "data": source,
        "clean_run_s": round(clean_s, 1),
        "injected": len(results),
        "killed_by_sigkill": sum(r["killed"] for r in results),
        "survived": sum(r["survived"] for r in results),
        "tracebacks_seen": sum(r["traceback_seen"] for r in results),
        "load_average": os.getloadavg(),
        "machine": describe(),
        "cases": results,
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        f"# Fault injection: {summary['survived']}/{summary['injected']} survived",
        "",
        f"`python benchmarks/fault_injection.py {' '.join(sys.argv[1:])}`; workload "
        f"`{summary['command']}` on {source}; uninterrupted run {clean_s:.0f} s; load average "
        f"{summary['load_average'][0]:.1f}.",
        "",
        "| point | killed | last stage seen | output absent/complete | earlier results intact "
        "| rerun = uninterrupted | leftovers | survived |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        name = r["point"] + (f" @ {r['delay_s']} s" if r["delay_s"] else "")
        intact = r["previous_intact"] and r["cache_entries_intact"] and r["previous_intact_after_rerun"]
        lines.append(
            f"| {name} | {'SIGKILL' if r['killed'] else 'no (rc ' + str(r['killed_rc']) + ')'} | "
            f"{r['last_stage']} | {r['output_absent_or_complete']} | {intact} | "
            f"{r['rerun_equals_uninterrupted']} | {len(r['leftovers_after_rerun'])} | "
            f"{r['survived']} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    shutil.rmtree(base, ignore_errors=True)
    print(
        f"{summary['survived']}/{summary['injected']} survived; {summary['killed_by_sigkill']} SIGKILLed; "
        f"tracebacks seen: {summary['tracebacks_seen']}"
    )
    return 0 if summary["survived"] == summary["injected"] else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[4:])
    raise SystemExit(main())

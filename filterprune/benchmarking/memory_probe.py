"""CPU peak memory of one benchmark variant, measured in a fresh interpreter that runs only it:
``python -m filterprune.benchmarking.memory_probe`` reads the job (JSON) on stdin and prints the peak RSS
in MB (``timing._add_cpu_memory`` starts it once per row)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from ..errors import FilterpruneError
from .runners import ort_runner, ov_runner, torch_runner


def peak_rss_mb() -> float:
    """This process's peak RSS. /proc's VmHWM, not getrusage: ru_maxrss survives exec, so a spawned
    child would report its parent's peak."""
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status")


def probe(job: dict) -> float:
    """Build one variant, run it 3 times, return peak RSS (MB) during inference: the resident runtime,
    weights and activations (imports included, loading transients excluded)."""
    source, runtime, threads = job["source"], job["runtime"], job["threads"]
    torch.set_num_threads(threads)
    x = torch.randn(job["batch"], *job["shape"])
    if runtime == "onnxruntime":
        run = ort_runner(Path(source["onnx"]), x, "cpu", threads)
    elif runtime == "openvino":
        run = ov_runner(Path(source["onnx"]), x, threads, job.get("precision", "fp32"))
    else:
        from .. import serialization as ckpt  # torch_pruning, safetensors: not in the ONNX rows' peak RSS
        from ..models import build_model, factory  # torchvision: likewise

        for ref, sha in (source.get("trusted") or {}).items():  # the user's factory, trusted by our parent
            factory.admit(ref, sha, "the benchmarking process")  # for exactly the code it imported
        if source["kind"] == "dense":
            model = build_model(ckpt.read_meta(Path(source["path"]))["spec"])
        else:
            model = ckpt.load(Path(source["path"]))
        run = torch_runner(model, x, torch.device("cpu"))
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM: loading spikes are not inference memory
        f.write("5")
    for _ in range(3):
        run()
    return peak_rss_mb()


if __name__ == "__main__":
    try:
        print(probe(json.loads(sys.stdin.read())))
    except FilterpruneError as e:  # the parent records the last line: the whole message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

"""The machine a number came from: CPU model, cores, GPU, library versions."""

from __future__ import annotations

import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version

import torch


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def openvino_version() -> str | None:
    """OpenVINO's installed version (None without it), read without importing it (its import is slow and
    unsafe before a fork)."""
    try:
        return version("openvino")
    except PackageNotFoundError:
        return None


def describe() -> dict:
    import onnxruntime

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch_pruning": version("torch-pruning"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def run_record(script: str, argv: list[str], started: float, load_start: float) -> dict:
    """When and how a benchmark script ran, for its results file: date, wall minutes since ``started``
    (a ``time.perf_counter()``), the load average at the start and now, and the command that reruns it."""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_min": (time.perf_counter() - started) / 60,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg()[0],
        "command": " ".join(["python", script, *argv]),
    }

"""What `filterprune bench` (and `compress`'s bench stage) times: runtimes, devices, providers, batch sizes,
iterations. Checked when built, so a bad value is a usage error before any model is loaded."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import Bench
from ..errors import UsageError
from .runners import PROVIDERS, available_providers, openvino_core, ov_has_bf16

RUNTIMES = ("torch", "onnxruntime", "openvino")
DEFAULT_RUNTIMES = ("torch", "onnxruntime")
DEVICES = ("cpu", "cuda")
_TIMING = Bench()


@dataclass(frozen=True)
class BenchConfig:
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    devices: tuple[str, ...] = ("auto",)
    providers: tuple[str, ...] = ("auto",)
    batch_sizes: tuple[int, ...] = _TIMING.batch_sizes  # the Bench option group's defaults, as compress's
    warmup: int = _TIMING.warmup
    iters: int = _TIMING.iters
    threads: int | None = None
    fp16: bool = False
    compile: bool = False
    memory: bool = _TIMING.memory
    precisions: tuple[str, ...] = _TIMING.precision

    def __post_init__(self):
        for flag, given in (
            ("--runtime", self.runtimes),
            ("--device", self.devices),
            ("--provider", self.providers),
        ):
            if not given:
                raise UsageError(f"{flag} needs at least one value")
        for r in self.runtimes:
            if r not in RUNTIMES:
                raise UsageError(f"unknown runtime {r!r}; valid: {', '.join(RUNTIMES)}")
            if r == "openvino":
                openvino_core()  # installed, or the install hint
        for d in self.devices:
            if d not in (*DEVICES, "auto"):
                raise UsageError(f"unknown device {d!r}; valid: auto, {', '.join(DEVICES)}")
            if d == "cuda" and not torch.cuda.is_available():
                raise UsageError("--device cuda requested but no CUDA GPU is available")
        for p in self.providers:
            if p not in (*PROVIDERS, "auto"):
                raise UsageError(f"unknown provider {p!r}; valid: auto, {', '.join(PROVIDERS)}")
            if p != "auto" and p not in available_providers():
                raise UsageError(
                    f"onnxruntime provider {p!r} is not available here (have: "
                    f"{', '.join(available_providers())}; the GPU build is "
                    "`pip install filterprune[gpu]`)"
                )
        Bench(
            tuple(self.batch_sizes),
            self.iters,
            self.warmup,
            self.memory,  # the options' own checks
            tuple(self.precisions),
        ).validate()
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {self.threads}")
        self._check_precisions()

    def _check_precisions(self) -> None:
        """Each precision asked must run on a runtime asked: int8 on onnxruntime or OpenVINO, bf16 on OpenVINO
        where the CPU has it."""
        if "int8" in self.precisions and not {"onnxruntime", "openvino"} & set(self.runtimes):
            raise UsageError(
                "--precision int8 runs on onnxruntime or OpenVINO, not PyTorch: add --runtime "
                "onnxruntime or openvino"
            )
        if "bf16" in self.precisions:
            if "openvino" not in self.runtimes:
                raise UsageError("--precision bf16 is OpenVINO's: add --runtime openvino")
            if not ov_has_bf16():
                raise UsageError(
                    "--precision bf16: this CPU has no bfloat16 support in OpenVINO (AVX-512 BF16 or AMX)"
                )

    def torch_devices(self) -> list[str]:
        if "auto" in self.devices:
            return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        return list(self.devices)

    def ort_providers(self) -> list[str]:
        return available_providers() if "auto" in self.providers else list(self.providers)

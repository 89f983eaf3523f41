"""State dicts from files, read without running pickled code: ``.safetensors``, or ``.pt/.pth`` through
``torch.load(weights_only=True)``; and a strict load into a model whose refusal names what differs. The
checkpoint format (``serialization``) and pretrained weights from the torch hub cache both read with it.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import RunError, UsageError


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors from .safetensors, or from .pt/.pth via torch.load(weights_only=True) (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        with warnings.catch_warnings():  # e.g. "pickle protocol 4": the refusal below says enough
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(f"{path}: unreadable or unsafe checkpoint ({msg[:200]})") from None
    except Exception as e:  # unpickling refused by weights_only, truncated zip, ...
        raise RunError(f"{path}: unreadable or unsafe checkpoint ({type(e).__name__})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise RunError(f"{path}: does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a message that names the differing keys or shapes (architecture mismatch)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or extra or shapes:
        raise UsageError(
            f"{source} does not match the {type(model).__name__} architecture: "
            f"{differences(missing, extra, shapes)}"
        )
    check_finite(state, source)
    model.load_state_dict(state, strict=True)


def differences(missing: list[str], extra: list[str], shapes: list[str]) -> str:
    """How two state dicts differ, in one line: how many keys are missing, unexpected or of another shape,
    with the first few of each."""
    parts = []
    for label, items in (("missing", missing), ("unexpected", extra), ("shape", shapes)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
    return "; ".join(parts)


_QUOTED = re.compile(r'"([^"]*)"')
_SHAPE = re.compile(
    r"size mismatch for ([^:]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)"
)


def load_error(e: BaseException) -> str:
    """``nn.Module.load_state_dict``'s strict refusal (which torchvision and timm raise when a weights file
    is of another architecture) as :func:`differences` says it; other errors by their first line. Read from
    torch's message, so the keys are those after the library's own renaming of the file's keys."""
    text = str(e)
    missing: list[str] = []
    extra: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Missing key(s) in state_dict:"):
            missing = _QUOTED.findall(line.partition(":")[2])
        elif line.startswith("Unexpected key(s) in state_dict:"):
            extra = _QUOTED.findall(line.partition(":")[2])
    shapes = [f"{k} {_dims(a)} vs {_dims(b)}" for k, a, b in _SHAPE.findall(text)]
    found = differences(missing, extra, shapes)
    return found or f"{type(e).__name__}: {(text.splitlines() or [''])[0][:200]}"


def check_finite(state: dict, source: str) -> None:
    """Weights that hold NaN or inf are refused where they are read (not when a criterion or the loss
    meets them later)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise RunError(f"{source}: {len(bad)} tensor(s) hold NaN or inf (e.g. {', '.join(bad[:3])})")


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))

"""ultralytics YOLO detectors as ``yolo:<model yaml>`` (``pip install 'filterprune[yolo]'``), for the
detection task: ``yolo:yolov8n.yaml``, ``yolo:yolo11n.yaml`` (any detection yaml ultralytics ships, the
scale letter choosing the size as in ultralytics) or ``yolo:path/to/own.yaml``.

Built offline from the yaml with the data's class count, random init: no hub, no download, no settings sync
(``YOLO_OFFLINE``), no pip install at run time (``YOLO_AUTOINSTALL``: its image patch installs a HEIF plugin
on the first unreadable image), and the process-wide patches its import applies (``PIL.Image.open``,
``torch.save``) undone, so a bad image elsewhere stays a clean error; a reference that is a URL is refused
before ultralytics sees it. The yaml is read in ultralytics' restricted mode, which builds only known layers
and evaluates no string of the file (its default evaluates the ``activation`` line with ``eval``). Weights
come from a local state dict through ``checkpoint`` (another class count keeps all but the prediction
layers). Only YOLO ``Detect`` heads (v3, v5, v6, v8, v9, 11, 12, 26: decoded boxes and class scores per
anchor, NMS outside) are taken; the end-to-end heads of v10 and 26 are trained with both branches and
predict with the one-to-many branch.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from PIL import Image

from ..errors import UsageError
from ..limits import printable

PREFIX = "yolo:"
HEADS = ("Detect", "v10Detect")  # heads whose training output the detection loss (v8DetectionLoss) takes
INSTALL = "yolo: models need the optional ultralytics package: pip install 'filterprune[yolo]'"


def is_yolo(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def _ultralytics():
    """ultralytics' model code, imported offline (its hub and settings stay silent)."""
    os.environ["YOLO_OFFLINE"] = "1"  # both read when ultralytics is first imported
    os.environ["YOLO_AUTOINSTALL"] = "false"
    try:
        from ultralytics.nn import tasks  # the optional extra
        from ultralytics.utils import checks, patches  # patches applied on import, undone below
    except ImportError:
        raise UsageError(INSTALL) from None
    checks.AUTOINSTALL = False  # also where ultralytics was imported before us
    if Image.open is getattr(patches, "image_open", None):
        Image.open = getattr(patches, "_image_open", Image.open)
    if torch.save is getattr(patches, "torch_save", None):
        torch.save = getattr(patches, "_torch_save", torch.save)
    return tasks


def _built(tasks, cfg: dict, in_channels: int, num_classes: int) -> nn.Module:
    """ultralytics computes its strides and head biases with tensors while it builds, which the meta
    device cannot (a size check builds there): built on the CPU, then moved where it was asked for."""
    where = torch.empty(0).device
    with torch.device("cpu"):
        model = tasks.DetectionModel(cfg, ch=in_channels, nc=num_classes, verbose=False)
    return model.to(where) if where.type == "meta" else model


def canonical(name: str) -> str:
    """The reference as recorded: a local yaml's path made absolute, a bundled name as it is."""
    ref = name[len(PREFIX) :]
    path = Path(ref).expanduser()
    return f"{PREFIX}{path.resolve()}" if path.is_file() else name


def resolve(name: str) -> str:
    """The yaml file ``yolo:<ref>`` names (UsageError: not a yaml, a URL, not found, not installed)."""
    ref = name[len(PREFIX) :]
    shown = printable(name, 200)
    if not ref.endswith((".yaml", ".yml")):
        raise UsageError(f"{shown}: name an ultralytics model yaml, e.g. yolo:yolov8n.yaml or yolo:my.yaml")
    if "://" in ref or ref.startswith(("ul:", "gs:")):
        raise UsageError(f"{shown}: a yolo: model is built from a local yaml; nothing is downloaded")
    if Path(ref).expanduser().is_file():
        return str(Path(ref).expanduser().resolve())
    found = "" if "/" in ref or os.sep in ref else _bundled(ref)
    if not found:
        raise UsageError(
            f"{shown}: no such yaml file, and not one of ultralytics' model yamls "
            "(ultralytics/cfg/models/*/*.yaml; a scale letter picks the size: yolov8n.yaml, yolo11s.yaml)"
        )
    return found


def _bundled(ref: str) -> str:
    """The yaml of ultralytics' own ``ref`` (``yolov8n.yaml`` is ``yolov8.yaml`` at scale n), or ""."""
    _ultralytics()
    from ultralytics.utils.checks import check_yaml  # the optional extra (imported above)

    unified = re.sub(r"(\d+)([nslmx])(.+)?$", r"\1\3", ref)  # as ultralytics' yaml_model_load does
    return str(check_yaml(ref, hard=False) or check_yaml(unified, hard=False) or "")


def yaml_digest(name: str) -> str | None:
    """SHA-256 of a local yaml's bytes (a baseline trained from an edited file is not reused); None
    for a bundled name (the ultralytics version names it)."""
    if not is_yolo(name) or not Path(name[len(PREFIX) :]).is_file():
        return None
    return hashlib.sha256(Path(name[len(PREFIX) :]).read_bytes()).hexdigest()


def version() -> str:
    _ultralytics()
    import ultralytics  # the optional extra (imported above)

    return str(ultralytics.__version__)


@contextlib.contextmanager
def _quiet_restricted(tasks):
    """ultralytics' restricted model building (no ``eval`` of yaml strings, known layers only) and its
    logger at warnings only while a model is built."""
    local = getattr(getattr(tasks, "_SafeLoad", None), "_local", None)
    before = getattr(local, "active", False)
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    if local is not None:
        local.active = True
    try:
        yield
    finally:
        if local is not None:
            local.active = before
        logger.setLevel(level)


def yolo_model(name, num_classes, in_channels, image_size, args=None, weights=None) -> nn.Module:
    """An untrained ultralytics ``DetectionModel`` from the yaml ``yolo:<name>`` with ``num_classes``
    classes (no background class); its ``args`` carry ultralytics' default loss gains (box 7.5, cls 0.5,
    dfl 1.5), which its own loss reads."""
    full = f"{PREFIX}{name}"
    if weights is not None:
        raise UsageError(f"{full}: weights come from a local state dict: pass checkpoint", ("checkpoint",))
    if args:
        raise UsageError(f"{full} takes no model_args (edit a copy of the yaml)", ("model_args",))
    path = resolve(full)
    tasks = _ultralytics()
    from ultralytics.cfg import get_cfg  # the optional extra (imported above)

    with _quiet_restricted(tasks):
        try:
            cfg = tasks.yaml_model_load(path)
            cfg["scale"] = tasks.guess_model_scale(name)  # yolov8s.yaml: yolov8.yaml at scale s
            head = str(cfg["head"][-1][2])
            if head not in HEADS:
                raise UsageError(
                    f"{full}: its head is {printable(head, 60)}; the detection task trains "
                    f"{' / '.join(HEADS)} heads"
                )
            model: Any = _built(tasks, cfg, in_channels, num_classes)
        except UsageError:
            raise
        except Exception as e:  # noqa: BLE001 - a user's yaml fails in ultralytics' code in many ways
            raise UsageError(f"{full}: not a buildable ultralytics model yaml ({type(e).__name__})") from None
    model.args = get_cfg()  # hyperparameters; v8DetectionLoss reads the box/cls/dfl gains
    return model


def is_yolo_module(model: nn.Module) -> bool:
    """Whether ``model`` is an ultralytics detection model (its last layer a Detect head)."""
    layers = getattr(model, "model", None)
    return (
        type(model).__name__ == "DetectionModel"
        and isinstance(layers, nn.Sequential)
        and type(layers[-1]).__name__ in HEADS
    )


def max_stride(model: nn.Module) -> int:
    m: Any = model  # a DetectionModel (torch types a module's attributes as Tensor | Module)
    return int(m.stride.max())


def class_branch_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the head's class-score branches (``cv3``, ``one2one_cv3``): their widths follow
    the class count (a COCO checkpoint's 80 classes widen the whole branch, not only its last conv)."""
    m: Any = model  # a DetectionModel
    head = f"model.{len(m.model) - 1}."
    return {k for k in model.state_dict() if k.startswith((head + "cv3.", head + "one2one_cv3."))}

"""Any timm model as ``timm:<name>`` (``pip install 'filterprune[timm]'``), via ``timm.create_model``.

Random init with ``num_classes`` set; pretrained weights come from a local file through ``--checkpoint``
(a 1000-class ImageNet file on data with other classes: the head is left fresh and trained, as for
``tv:``), or with ``--weights DEFAULT`` from timm's own cache (offline: nothing is downloaded).
The native input size and preprocessing come from the model's pretrained config.
"""
from __future__ import annotations

import os

import torch.nn as nn

from ..errors import UsageError
from . import MODELS

LIST_HINT = "list them with: python -c \"import timm; print(timm.list_models())\" (a pattern: timm.list_models('*resnet*'))"


def _timm():
    try:
        import timm
    except ImportError:
        raise UsageError("timm: models need the optional timm package: pip install 'filterprune[timm]'") from None
    return timm


def _check_name(name: str):
    timm = _timm()
    if not timm.is_model(name):
        raise UsageError(f"unknown timm model {name!r}; {LIST_HINT}")
    return timm


@MODELS.register("timm:", help="any timm model, e.g. timm:resnet18 (optional extra: pip install 'filterprune[timm]')")
def timm_model(name, num_classes, in_channels, image_size, args=None, weights=None, pretrained=False):
    timm = _check_name(name)
    kwargs = {**(args or {}), "num_classes": num_classes, "in_chans": in_channels}
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as e:
        raise UsageError(f"timm:{name} does not take these --model-args ({str(e)[:200]})") from None


def native_input(name: str, weights: str | None) -> dict:
    timm = _check_name(name)
    cfg = timm.get_pretrained_cfg(name)
    cfg = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else (cfg or {})
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop = float(cfg.get("crop_pct", 0.875) or 0.875)
    info = {"image_size": size, "min_size": int((cfg.get("min_input_size") or (3, 1, 1))[-1]),
            "resize_size": int(round(size / crop))}
    if weights is not None:
        info.update(mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))), std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
                    weights=weights)
    return info


def pretrained(spec) -> tuple[nn.Module, dict]:
    """``--weights DEFAULT``: timm's pretrained weights from its local cache only (HF_HUB_OFFLINE)."""
    name = spec.name[5:]
    if spec.weights != "DEFAULT":
        raise UsageError(f"timm:{name}: --weights takes DEFAULT (timm's own cache); for a file use --checkpoint")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = timm_model(name, spec.num_classes, spec.in_channels, spec.image_size, spec.args, pretrained=True)
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"pretrained weights of timm:{name} are not in timm's local cache "
                         f"({type(e).__name__}); pass --checkpoint FILE instead") from None
    return model, {"weights": "DEFAULT", "head_replaced": []}

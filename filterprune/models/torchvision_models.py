"""Any torchvision classifier as ``tv:<name>``, random init or with pretrained ``--weights``; and, for the
detection and segmentation tasks, torchvision's detectors (``tv:ssdlite320_mobilenet_v3_large``, ...) and
segmenters (``tv:lraspp_mobilenet_v3_large``, ...), built untrained.

``num_classes`` is passed to the builder; auxiliary heads are switched off because they only run in
training mode and would make the traced graph differ from the deployed one. The first conv is
re-created when the data has other than 3 input channels.

Pretrained weights are read from the local torch hub cache (``$TORCH_HOME/hub/checkpoints/<file>``, the
file torchvision itself would download) with ``torch.load(weights_only=True)``: nothing is downloaded and
no pickled code runs. When the data has another class count than the weights, the classifier head is
left at its fresh initialisation (it is then trained with the rest) and the run says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torchvision

from ..errors import UsageError
from ..state_dict import check_finite, load_error, read_state_dict

_NO_AUX = {"googlenet", "inception_v3"}
_TRANSFORM_INPUT = {"googlenet", "inception_v3"}  # their pretrained weights expect transform_input=True


def classifier_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models))


def detector_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models.detection))


def is_detector(name: str) -> bool:
    """Whether ``name`` (``tv:<name>``) is one of torchvision's detectors."""
    return name.startswith("tv:") and name[3:] in detector_names()


def segmenter_names() -> list[str]:
    return sorted(torchvision.models.list_models(module=torchvision.models.segmentation))


def is_segmenter(name: str) -> bool:
    """Whether ``name`` (``tv:<name>``) is one of torchvision's semantic segmenters."""
    return name.startswith("tv:") and name[3:] in segmenter_names()


def background(name: str) -> int:
    """1 where the detector reserves class 0 for the background (R-CNNs, SSD), 0 where it does not
    (RetinaNet, FCOS: one sigmoid per class)."""
    return 0 if name.startswith(("retinanet", "fcos")) else 1


def _check_name(name: str) -> None:
    if name not in classifier_names():
        hint = (
            " (a detector: compress it with task detection)"
            if name in detector_names()
            else " (a segmenter: compress it with task segmentation)"
            if name in segmenter_names()
            else ""
        )
        raise UsageError(
            f"unknown torchvision classifier {name!r}{hint}; valid: {', '.join(classifier_names())}"
        )


def weights_enum(name: str, weights: str):
    """The torchvision weights entry: ``DEFAULT``, an enum member name (``IMAGENET1K_V1``) or its full
    name (``ResNet18_Weights.IMAGENET1K_V1``)."""
    _check_name(name)
    enum = torchvision.models.get_model_weights(name)
    member = weights.split(".")[-1] if weights.startswith(enum.__name__ + ".") else weights
    if member == "DEFAULT":
        return enum.DEFAULT
    if member not in enum.__members__:
        names = [m for m in enum.__members__ if m != "DEFAULT"]  # DEFAULT is an alias among the members
        raise UsageError(f"unknown weights {weights!r} for tv:{name}; valid: DEFAULT, {', '.join(names)}")
    return enum[member]


def weights_file(w) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(w.url)


def torchvision_model(name, num_classes, in_channels, image_size, args=None, weights=None):
    if name in detector_names():
        return detector(name, num_classes, in_channels, args, weights)
    if name in segmenter_names():
        return segmenter(name, num_classes, in_channels, args, weights)
    _check_name(name)
    kwargs = {**(args or {}), "weights": None, "num_classes": num_classes}
    if name in _NO_AUX:
        kwargs.update(aux_logits=False, init_weights=True)
        if weights is not None:
            kwargs["transform_input"] = True
    try:
        model = torchvision.models.get_model(name, **kwargs)
    except (TypeError, ValueError) as e:  # an unknown keyword; a value the builder refuses
        first = (str(e).splitlines() or [""])[0][:200]
        raise UsageError(
            f"tv:{name} does not take these model_args ({type(e).__name__}: {first})", ("model_args",)
        ) from None
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    return model


def detector(name, num_classes, in_channels, args=None, weights=None) -> nn.Module:
    """An untrained torchvision detector for ``num_classes`` object classes (plus the background class
    where it has one); pretrained weights and backbones are refused (nothing is downloaded)."""
    if weights is not None or in_channels != 3:
        raise UsageError(f"tv:{name}: detectors are built untrained, for 3-channel images (no weights)")
    kwargs = {**(args or {}), "weights": None, "weights_backbone": None}
    kwargs["num_classes"] = num_classes + background(name)
    return _built(name, kwargs)


def segmenter(name, num_classes, in_channels, args=None, weights=None) -> nn.Module:
    """An untrained torchvision segmenter for ``num_classes`` classes (the background among them, as the
    masks count it); pretrained weights and backbones are refused (nothing is downloaded)."""
    if weights is not None or in_channels != 3:
        raise UsageError(f"tv:{name}: segmenters are built untrained, for 3-channel images (no weights)")
    return _built(
        name, {**(args or {}), "weights": None, "weights_backbone": None, "num_classes": num_classes}
    )


def _built(name: str, kwargs: dict) -> nn.Module:
    """torchvision's builder ``name`` on ``kwargs``; a keyword or value it refuses is a UsageError."""
    try:
        return torchvision.models.get_model(name, **kwargs)
    except (TypeError, ValueError) as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise UsageError(
            f"tv:{name} does not take these model_args ({type(e).__name__}: {first})", ("model_args",)
        ) from None


def detector_input(model: nn.Module) -> int:
    """The side a torchvision detector resizes its images to (its transform's fixed or shorter side)."""
    t: Any = model.transform  # a GeneralizedRCNNTransform (torch types module attributes as Tensor | Module)
    return int(t.fixed_size[0] if t.fixed_size else t.min_size[-1])


def native_input(name: str, weights: str | None) -> dict:
    """Input size and preprocessing of a torchvision classifier: from the named weights' transforms,
    else from its DEFAULT weights' (224 for most ImageNet models)."""
    _check_name(name)
    w = weights_enum(name, weights or "DEFAULT") if (weights or _has_weights(name)) else None
    if w is None:
        return {"image_size": 224, "min_size": 1}
    t = w.transforms()
    info: dict[str, Any] = {
        "image_size": int(t.crop_size[0]),
        "min_size": int(min(w.meta.get("min_size", (1, 1)))),
        "resize_size": int(t.resize_size[0]) if t.resize_size else int(t.crop_size[0]),
    }
    if weights is not None:
        info.update(
            mean=tuple(float(v) for v in t.mean),
            std=tuple(float(v) for v in t.std),
            weights=w.name,
            weights_file=str(weights_file(w)),
        )
    return info


def _has_weights(name: str) -> bool:
    try:
        return len(torchvision.models.get_model_weights(name)) > 0
    except (ValueError, KeyError):
        return False


@contextlib.contextmanager
def _from_cache_only(path: Path):
    """torchvision's own loading path (key fixes such as DenseNet's), reading ``path`` with
    ``weights_only=True`` instead of downloading or unpickling."""
    from torchvision.models import _api

    original = _api.load_state_dict_from_url
    _api.load_state_dict_from_url = lambda *a, **k: read_state_dict(path)
    try:
        yield
    finally:
        _api.load_state_dict_from_url = original


def pretrained(spec) -> tuple[nn.Module, dict]:
    """``tv:<name>`` with the spec's weights loaded from the hub cache; the head replaced when the class
    counts differ. Returns the model and what was loaded (file, weights name, replaced keys)."""
    name = spec.name[3:]
    w = weights_enum(name, spec.weights)
    path = weights_file(w)
    if not path.is_file():
        raise UsageError(
            f"pretrained weights for tv:{name} ({w}) not in the torch hub cache: place "
            f"{os.path.basename(w.url)} at {path} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), "
            "or pass --checkpoint FILE"
        )
    _warn_if_not_published(path, name)
    kwargs = {
        "weights": w
    }  # (googlenet/inception: torchvision builds the aux heads for the weights, then drops them)
    with _from_cache_only(path):
        try:
            source = torchvision.models.get_model(name, **kwargs)
        except (RuntimeError, KeyError, ValueError) as e:  # a file of another architecture
            raise UsageError(f"{path} does not hold the weights of tv:{name}: {load_error(e)}") from None
    check_finite(source.state_dict(), str(path))
    model = torchvision_model(
        name, spec.num_classes, spec.in_channels, spec.image_size, spec.args, spec.weights
    )
    replaced = transplant(source.state_dict(), model)
    info = {
        "weights": w.name,
        "weights_file": str(path),
        "categories": len(w.meta.get("categories") or []),
        "head_replaced": replaced,
    }
    return model, info


def transplant(source: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Copy every tensor whose name and shape match into ``model``; returns the keys left at their fresh
    initialisation (the classifier head when the class counts differ, the first conv for other channels)."""
    own = model.state_dict()
    missing = [k for k in own if k not in source]
    if missing and len(missing) > len(own) // 2:
        raise UsageError(
            f"the weights do not fit {type(model).__name__} ({len(missing)} of {len(own)} tensors missing, "
            f"e.g. {', '.join(missing[:3])})"
        )
    kept = {k: v for k, v in source.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(kept, strict=False)
    return sorted(k for k in own if k not in kept)


def _warn_if_not_published(path: Path, name: str) -> None:
    """torchvision's file names end in the first hex digits of their SHA-256; say when they do not match."""
    stem = path.stem.rsplit("-", 1)
    if len(stem) != 2 or not all(c in "0123456789abcdef" for c in stem[1]):
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if not h.hexdigest().startswith(stem[1]):
        warnings.warn(
            f"{path.name}: its SHA-256 does not start with {stem[1]} as torchvision's file name says: "
            f"these are not the published weights of tv:{name}",
            stacklevel=2,
        )


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(
                    parent,
                    child_name,
                    nn.Conv2d(  # torch types a Conv2d's sizes as _ConvNd's tuple[int, ...]; they are pairs
                        in_channels,
                        child.out_channels,
                        child.kernel_size,  # type: ignore[arg-type]
                        child.stride,  # type: ignore[arg-type]
                        child.padding,  # type: ignore[arg-type]
                        child.dilation,  # type: ignore[arg-type]
                        child.groups,
                        child.bias is not None,
                    ),
                )
                return

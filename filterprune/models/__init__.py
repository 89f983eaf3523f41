"""Model registry: ``build_model(ModelSpec)`` builds any registered architecture.

A model file registers a builder ``fn(num_classes, in_channels, image_size) -> nn.Module``.
Parameterised names: ``tv:<torchvision name>`` builds any torchvision classifier, ``timm:<name>`` any timm
model (the optional ``timm`` extra). A user's own factory is named ``path/to/file.py:fn`` or
``package.module:fn`` (``factory.py``); building one imports the user's code, so it is allowed only for
references the user handed over in this process (the command line, ``compress(model=...)``) or with
``trust_code`` — a saved folder received from elsewhere never runs code by being loaded.

``build_model`` builds the *architecture* (random init). ``initial_model`` is the model a run starts
from: the architecture plus pretrained weights when the spec names some (``tv:<name>`` with ``weights``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch.nn as nn

from ..errors import RunError
from ..registry import Registry
from ..safeload import MAX_ARGS_BYTES, check_writable

MODELS: Registry = Registry("model", prefixes=("tv:", "timm:"))
MAX_IMAGE_SIZE = 4096  # the largest input side a saved model description may state


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the dense architecture; saved next to every checkpoint.

    ``args``: extra keyword arguments of the builder (``--model-args``); ``weights``: the pretrained weights
    the run started from (a torchvision enum name such as ``IMAGENET1K_V1``), recorded so the run says what
    it pruned; rebuilding the architecture never needs them (the saved weights replace them).
    """

    name: str
    num_classes: int = 10
    in_channels: int = 3
    image_size: int = 32
    args: dict = field(default_factory=dict)
    weights: str | None = None

    def to_dict(self) -> dict:
        """``args``/``weights`` only when set: a registered model's description (and so its baseline cache
        key) is what it was before they existed."""
        d = asdict(self)
        if not d["args"]:
            del d["args"]
        if d["weights"] is None:
            del d["weights"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """From an untrusted JSON object: types and ranges checked, so a file cannot ask for a huge model.
        Nothing is imported here: a factory reference is only checked for its form."""
        spec = cls(name=d["name"], num_classes=d["num_classes"], in_channels=d["in_channels"],
                   image_size=d["image_size"], args=d.get("args") or {}, weights=d.get("weights"))
        if not isinstance(spec.name, str) or not is_model_ref(spec.name):
            raise ValueError(f"unknown model {spec.name!r}")
        for name, hi in (("num_classes", 100_000), ("in_channels", 64), ("image_size", MAX_IMAGE_SIZE)):
            v = getattr(spec, name)
            if type(v) is not int or not 1 <= v <= hi:
                raise ValueError(f"{name} must be an integer in [1, {hi}], got {v!r}")
        if not isinstance(spec.args, dict):
            raise ValueError("args must be a small JSON object")
        try:
            check_writable(spec.args, MAX_ARGS_BYTES)
        except ValueError as e:
            raise ValueError(f"args must be a small JSON object ({e})") from None
        if spec.weights is not None and not (isinstance(spec.weights, str) and spec.weights.isidentifier()):
            raise ValueError(f"weights must be a weights name, got {spec.weights!r}")
        return spec


def is_model_ref(name: str) -> bool:
    """A registered name, ``tv:``/``timm:`` name, or a factory reference (checked for form only)."""
    from .factory import is_factory_ref

    return name in MODELS or is_factory_ref(name)


def check_model_ref(name: str, args: dict | None = None) -> None:
    """Fail early (UsageError) on a name that cannot be built: unknown, or a factory that is not there."""
    from .factory import is_factory_ref, resolve

    if is_factory_ref(name):
        resolve(name)
    else:
        MODELS.get(name)


def build_model(spec: ModelSpec, trust_code: bool = False) -> nn.Module:
    """The dense architecture (random init). A factory reference runs user code: allowed when the user
    handed it over in this process (``factory.trust``) or with ``trust_code``."""
    from .factory import build_factory, is_factory_ref

    if is_factory_ref(spec.name):
        return build_factory(spec, trust_code)
    builder = MODELS.get(spec.name)
    _, arg = MODELS.split(spec.name)
    kwargs = {"args": spec.args, "weights": spec.weights} if arg is not None else {}
    if arg is not None:
        return builder(arg, spec.num_classes, spec.in_channels, spec.image_size, **kwargs)
    if spec.args:
        raise _usage(f"{spec.name} takes no --model-args")
    return builder(spec.num_classes, spec.in_channels, spec.image_size)


def initial_model(spec: ModelSpec) -> tuple[nn.Module, dict]:
    """The model a run starts from, and what was loaded into it (``{}`` for a random init): the pretrained
    weights when the spec names some, with the classifier head replaced when the class counts differ."""
    if spec.weights is not None and spec.name.startswith("tv:"):
        from .torchvision_models import pretrained

        return pretrained(spec)
    if spec.weights is not None and spec.name.startswith("timm:"):
        from .timm_models import pretrained

        return pretrained(spec)
    return build_model(spec), {}


def check_finite(state: dict, source: str) -> None:
    """Weights that hold NaN or inf are refused where they are read (not when a criterion or the loss
    meets them later)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        raise RunError(f"{source}: {len(bad)} tensor(s) hold NaN or inf (e.g. {', '.join(bad[:3])})")


def native_input(name: str, weights: str | None = None) -> dict:
    """The input a model is made for: ``image_size``, ``min_size``, and with pretrained weights their
    preprocessing (``mean``, ``std``, ``resize_size``). Registered models are CIFAR-scale (32)."""
    from .factory import is_factory_ref

    if name.startswith("tv:"):
        from .torchvision_models import native_input as tv_native

        return tv_native(name[3:], weights)
    if name.startswith("timm:"):
        from .timm_models import native_input as timm_native

        return timm_native(name[5:], weights)
    if is_factory_ref(name):
        return {"image_size": 224, "min_size": 1}
    return {"image_size": 32, "min_size": 1}


def _usage(msg: str):
    from ..errors import UsageError

    return UsageError(msg)


from . import mlp, resnet_cifar, timm_models, torchvision_models, vgg  # noqa: E402,F401  (registration)

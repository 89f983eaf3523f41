"""The table of model builders (``MODELS``) and ``ModelSpec``, what names one of its entries with the
data it is built for. Every model file registers here; ``models/__init__.py`` builds from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..catalog import MODELS
from ..safeload import MAX_ARGS_BYTES, check_writable
from .factory import is_factory_ref

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
        spec = cls(
            name=d["name"],
            num_classes=d["num_classes"],
            in_channels=d["in_channels"],
            image_size=d["image_size"],
            args=d.get("args") or {},
            weights=d.get("weights"),
        )
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
    return name in MODELS or is_factory_ref(name)

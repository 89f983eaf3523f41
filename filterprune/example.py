"""What ``example_inputs`` may be, how the model is called on them, and what it returns.

A model is traced, profiled and checked by calling it once on example inputs. They come as:

- one tensor: ``model(x)`` (an image batch (N, C, H, W), square or not, or any other tensor);
- a tuple: several inputs, ``model(*inputs)`` (Torch-Pruning's convention);
- a dict: keyword inputs, ``model(**inputs)``;
- a list of 3-D tensors: one argument, a list of images (torchvision's detection convention,
  ``model([img1, img2])``); any other list is several inputs, as a tuple.

What comes back may be a tensor or any nesting of tuples, lists and dicts of tensors (a detector's list
of dicts, a backbone's OrderedDict of feature maps, YOLO's tuple): ``leaves`` lists its tensors and
``structure`` describes it, so a pruned model can be checked to return the same structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .errors import UsageError


@dataclass(frozen=True)
class Example:
    """Example inputs as positional and keyword arguments of the model's forward."""

    args: tuple
    kwargs: dict

    def __call__(self, model: nn.Module):
        return model(*self.args, **self.kwargs)

    @property
    def plain(self) -> torch.Tensor | None:
        """The one image batch (N, C, H, W) a classifier is called on, if that is what this is."""
        if not self.kwargs and len(self.args) == 1 and isinstance(self.args[0], torch.Tensor):
            return self.args[0] if self.args[0].ndim == 4 else None
        return None

    def tensors(self) -> list[torch.Tensor]:
        return [t for _, t in leaves((self.args, self.kwargs))]

    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of the first image (a 4-D batch's or a listed 3-D image's); else the first tensor's
        shape without its batch axis."""
        first = self.tensors()[0]
        return tuple(first.shape[1:]) if first.ndim != 3 else tuple(first.shape)

    def rebuild(self, tensors) -> Example:
        """The same nesting with its tensors replaced, in ``tensors()`` order (an exporter's flat inputs)."""
        it = iter(tensors)
        return Example(_swap(self.args, it), _swap(self.kwargs, it))

    def to(self, device) -> Example:
        return Example(to_device(self.args, device), to_device(self.kwargs, device))

    def describe(self) -> str:
        """The inputs' shapes, for messages."""
        shapes = [tuple(t.shape) for t in self.tensors()]
        return ", ".join(map(str, shapes[:4])) + (f" and {len(shapes) - 4} more" if len(shapes) > 4 else "")


def _swap(obj, it):
    if isinstance(obj, torch.Tensor):
        return next(it)
    if isinstance(obj, dict):
        return type(obj)((k, _swap(v, it)) for k, v in obj.items()) if obj else {}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_swap(v, it) for v in obj)
    return obj


def to_device(obj, device):
    """``obj`` (a tensor or any nesting of tuples, lists and dicts of them) on ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return type(obj)((k, to_device(v, device)) for k, v in obj.items()) if obj else {}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def as_example(example_inputs, param: str = "example_inputs") -> Example:
    """``example_inputs`` in any of the forms above, checked: at least one real tensor, none on the meta
    device. A single tensor (or a one-element tuple/list of a 4-D batch) is cut to its first sample."""
    x = example_inputs
    if isinstance(x, (tuple, list)) and len(x) == 1 and isinstance(x[0], torch.Tensor) and x[0].ndim == 4:
        x = x[0]
    if isinstance(x, torch.Tensor):
        ex = Example((x[:1].detach() if x.ndim >= 2 else x.detach(),), {})
    elif isinstance(x, dict):
        ex = Example((), dict(x))
    elif isinstance(x, list) and x and all(isinstance(t, torch.Tensor) and t.ndim == 3 for t in x):
        ex = Example(([t.detach() for t in x],), {})
    elif isinstance(x, (tuple, list)):
        ex = Example(tuple(x), {})
    else:
        raise UsageError(
            f"{param} must be a tensor, a tuple of inputs, a dict of keyword inputs or a list of images, "
            f"got a {type(x).__name__}",
            (param,),
        )
    found = ex.tensors()
    if not found:
        raise UsageError(f"{param} holds no tensor", (param,))
    if any(t.is_meta for t in found):
        raise UsageError(
            f"{param} holds tensors on the meta device ({ex.describe()}): give real values", (param,)
        )
    return ex


def random_inputs(shape, value_range: tuple[float, float] | None = None, generator=None) -> torch.Tensor:
    """Random inputs in the range a model takes: uniform in ``value_range`` (a detector's images in [0, 1]),
    or N(0, 1) where it is None (normalised inputs, a classifier's). N(0, 1) fed to a model that takes
    [0, 1] images puts it where it never runs: a random YOLO11's box logits reached 8,900 there, and a
    faithful ONNX file failed parity."""
    if value_range is None:
        return torch.randn(shape, generator=generator)
    low, high = value_range
    return low + (high - low) * torch.rand(shape, generator=generator)


def call(model: nn.Module, inputs):
    """``model`` on ``inputs``: an ``Example``, or a plain tensor as before."""
    return inputs(model) if isinstance(inputs, Example) else model(inputs)


def samples(inputs) -> int | None:
    """How many samples an ``Example`` holds (listed images, or the first tensor's first axis); None for a
    plain tensor, whose calls each count their own first axis as the batch."""
    if not isinstance(inputs, Example):
        return None
    if len(inputs.args) == 1 and isinstance(inputs.args[0], list):
        return len(inputs.args[0])
    first = inputs.tensors()[0]
    return int(first.shape[0]) if first.ndim else 1


def leaves(out, path: str = "") -> list[tuple[str, torch.Tensor]]:
    """The tensors of a nested output with their paths (``0.boxes``, ``feats.3``), in order."""
    if isinstance(out, torch.Tensor):
        return [(path, out)]
    if isinstance(out, dict):
        items = [(str(k), v) for k, v in out.items()]
    elif isinstance(out, (tuple, list)):
        items = [(str(i), v) for i, v in enumerate(out)]
    else:
        return []
    return [leaf for k, v in items for leaf in leaves(v, f"{path}.{k}" if path else k)]


def structure(out):
    """What a pruned model must still return: the nesting (types, keys, lengths) and, per tensor, its
    shape past the first axis (the first is the batch or, for detections, the number found)."""
    if isinstance(out, torch.Tensor):
        return ("tensor", tuple(out.shape[1:]))
    if isinstance(out, dict):
        return ("dict", tuple((k, structure(v)) for k, v in out.items()))
    if isinstance(out, (tuple, list)):
        return ("seq", tuple(structure(v) for v in out))
    return (type(out).__name__,)


def changed(before, after) -> str | None:
    """How the output structure ``after`` differs from ``before`` (``structure`` values); None if not."""
    if before == after:
        return None
    return f"output changed from {_show(before)} to {_show(after)}"


def _show(s, depth: int = 0) -> str:
    if s[0] == "tensor":
        return f"(..., {', '.join(map(str, s[1]))})" if s[1] else "(N,)"
    if s[0] == "dict" and depth < 2:
        return "{" + ", ".join(f"{k}: {_show(v, depth + 1)}" for k, v in s[1]) + "}"
    if s[0] == "seq" and depth < 2:
        return "[" + ", ".join(_show(v, depth + 1) for v in s[1]) + "]"
    return s[0]

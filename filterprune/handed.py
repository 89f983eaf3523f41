"""Checks of what a caller hands over in Python (a module, example inputs, the batches of DataLoaders),
so that a wrong object is one ``UsageError`` saying what was wrong and what is expected, in the words of
the Python parameters (``example_inputs``, ``calib``, ``train``), never a raw torch error from deep
inside a criterion or the training loop.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .errors import UsageError
from .example import Example, leaves
from .tracing import eval_mode

SHAPE = "one batch of images (N, C, H, W) in, logits (N, classes) out"


def _why(e: BaseException) -> str:
    text = (str(e).splitlines() or [""])[0][:200]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def check_module(model, param: str = "model") -> None:
    """A ``torch.nn.Module`` with real tensors (not on the meta device) and no tied parameters."""
    if not isinstance(model, nn.Module):
        raise UsageError(f"{param} must be a torch.nn.Module, got a {type(model).__name__}", (param,))
    meta = next((n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta), None)
    if meta is not None:
        raise UsageError(
            f"{param} is on the meta device ({meta} holds no values): materialise it first, e.g. "
            "model.to_empty(device='cpu') and load its weights",
            (param,),
        )
    check_untied(model, param)


def tied_parameters(model: nn.Module) -> list[list[str]]:
    """Names that share one parameter tensor (``c3.weight = c2.weight``), one list per shared tensor."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return [n for n in names.values() if len(n) > 1]


def check_untied(model: nn.Module, param: str = "model") -> None:
    """Pruning cuts each layer's tensors on its own, so a shared tensor would come out as two different
    ones, silently untied: refused, naming the tied parameters."""
    tied = tied_parameters(model)
    if tied:
        shown = "; ".join(" = ".join(t) for t in tied[:3])
        raise UsageError(
            f"{param} has tied parameters ({shown}): pruning would cut each layer on its own and "
            "untie them; untie them first (e.g. give one a copy: nn.Parameter(w.detach().clone()))",
            (param,),
        )


def logits(model: nn.Module, x: torch.Tensor, param: str) -> torch.Tensor:
    """``model(x)`` as filterprune calls it: the logits (N, classes), or a UsageError naming ``param``
    when the model does not run on it or returns something else (a dict, a scalar, several tensors)."""
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x)
    except Exception as e:  # noqa: BLE001 - the model's own code: any error means it does not take this input
        raise UsageError(
            f"the model does not run on inputs of shape {tuple(x.shape)}, as {param} gives them "
            f"({_why(e)}); filterprune expects {SHAPE}",
            (param,),
        ) from None
    out = out[0] if isinstance(out, (tuple, list)) and out else out
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or not out.is_floating_point():
        got = (
            f"a {type(out).__name__}"
            if not isinstance(out, torch.Tensor)
            else f"a {out.dtype} tensor of shape {tuple(out.shape)}"
        )
        raise UsageError(
            f"the model returns {got} for {param}; filterprune expects {SHAPE} (wrap a model whose "
            "forward returns a dict or several tensors so that it returns the logits)",
            (param,),
        )
    return out


def output(model: nn.Module, ex: Example, param: str):
    """``model`` on the example inputs ``ex`` (eval mode, no gradients): what it returns, or a UsageError
    naming ``param`` when it does not run on them (in ``logits``' words for one image batch)."""
    try:
        with torch.no_grad(), eval_mode(model):
            return ex(model)
    except Exception as e:  # noqa: BLE001 - the model's own code: any error means it does not take this input
        x = ex.plain
        if x is not None:
            raise UsageError(
                f"the model does not run on inputs of shape {tuple(x.shape)}, as {param} gives them "
                f"({_why(e)}); filterprune expects {SHAPE}",
                (param,),
            ) from None
        raise UsageError(
            f"the model does not run on {param} ({ex.describe()}; {_why(e)}): give the inputs its forward "
            "takes (a tuple for several, a dict for keywords, a list of images for torchvision detectors)",
            (param,),
        ) from None


def describe(out) -> str:
    """What a model returned, in a few words."""
    if isinstance(out, torch.Tensor):
        return f"a {out.dtype} tensor of shape {tuple(out.shape)}"
    return f"a {type(out).__name__} of {len(leaves(out))} tensors"


def check_batch(batch, param: str, shape: tuple[int, ...] | None = None, num_classes: int | None = None):
    """One ``(images, labels)`` batch of the DataLoader ``param``: float images of ``shape`` (C, H, W),
    integer labels in [0, num_classes); returns it."""
    if not (
        isinstance(batch, (tuple, list))
        and len(batch) == 2
        and all(isinstance(t, torch.Tensor) for t in batch)
    ):
        got = f"tuples of {len(batch)}" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
        raise UsageError(f"{param} must yield (images, labels) pairs of tensors, got {got}", (param,))
    x, y = batch
    if not x.is_floating_point():
        raise UsageError(
            f"{param} yields {x.dtype} images; the model gets them as they come, so they must be "
            "floating point (convert and normalise them in the loader, e.g. "
            "v2.ToDtype(torch.float32, scale=True))",
            (param,),
        )
    if x.ndim != 4 or (shape is not None and tuple(x.shape[1:]) != tuple(shape)):
        want = f"(N, {', '.join(map(str, shape))})" if shape is not None else "(N, C, H, W)"
        raise UsageError(f"{param} yields images of shape {tuple(x.shape)}; expected {want}", (param,))
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.ndim != 1 or len(y) != len(x):
        raise UsageError(
            f"{param} yields labels of dtype {y.dtype} and shape {tuple(y.shape)}; expected integer "
            f"class indices of shape ({len(x)},)",
            (param,),
        )
    if num_classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UsageError(
            f"{param} yields labels {int(y.min())}..{int(y.max())}; expected class indices in "
            f"[0, {num_classes}) (the model has {num_classes} outputs)",
            (param,),
        )
    return batch

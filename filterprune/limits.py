"""Bounds on every size that a file or a flag controls, checked before anything is allocated.

A small file or one flag value must never make filterprune build something huge: a sweep file cannot
stand for more than ``MAX_GRID_RUNS`` runs, and no forward pass is started whose activations would
exceed the memory budget (``FILTERPRUNE_MEMORY_GB``; default: a quarter of the machine's memory, at
least 2 GiB, so a real batch of 224-px images fits on a big machine while a bomb never does). The
estimate is made on PyTorch's meta device, so checking a 60000x60000 input costs nothing. Values that
go into an error message are shown with :func:`show`, which never builds the whole repr of a value.
"""

from __future__ import annotations

import math
import os
import reprlib

from .errors import UsageError

MAX_GRID_RUNS = 10_000  # a sweep file's grid x include; refused with the count before it is expanded
MAX_WORKERS = 256  # DataLoader worker processes (--workers, FILTERPRUNE_WORKERS): each is a process
MIN_MEMORY_GB = 2.0
BYTES_PER_VALUE = 4  # float32
LIVE_TENSORS = 3  # a forward holds about this many of its largest activations at once (input, output, skip)
PARAM_COPIES = 2  # training holds at least each weight and its gradient

OOM_MESSAGES = (  # out of memory as each library says it
    "out of memory",  # CUDA (torch.cuda.OutOfMemoryError)
    "can't allocate memory",  # torch on the CPU
    "failed to allocate memory",  # onnxruntime
    "bad_alloc",  # C++
    "cannot allocate memory",  # ENOMEM
)

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def show(value, width: int = 60) -> str:
    """A short repr for an error message: bounded in time and memory whatever ``value`` holds."""
    text = _repr.repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def printable(text: str, width: int | None = None) -> str:
    """``text`` with newlines, escape sequences and other control characters escaped (one terminal line),
    cut to ``width`` characters."""
    if width is not None and len(text) > width:
        text = text[:width] + f"... ({len(text) - width} more characters)"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def is_oom(e: BaseException) -> bool:
    """Whether ``e`` says the process ran out of memory (Python's MemoryError, or any library's words)."""
    return isinstance(e, MemoryError) or any(m in str(e).lower() for m in OOM_MESSAGES)


def default_memory_gb() -> float:
    """A quarter of the machine's physical memory, at least MIN_MEMORY_GB."""
    import psutil

    return max(MIN_MEMORY_GB, psutil.virtual_memory().total / 4 / 2**30)


def memory_budget() -> int:
    """Bytes one forward pass may use for activations (``FILTERPRUNE_MEMORY_GB``, else the default)."""
    raw = os.environ.get("FILTERPRUNE_MEMORY_GB", "")
    try:
        gb = float(raw) if raw else default_memory_gb()
    except ValueError:
        gb = default_memory_gb()
    return int((gb if math.isfinite(gb) and gb > 0 else default_memory_gb()) * 2**30)


def _refusal(need: int, what: str) -> str | None:
    budget = memory_budget()
    if need <= budget:
        return None
    return (
        f"{what} needs about {need / 2**30:.3g} GiB, over the {budget / 2**30:.3g} GiB limit "
        "(FILTERPRUNE_MEMORY_GB raises it)"
    )


def over_budget(largest: int, batch: int) -> str | None:
    """Why an inference forward at ``batch`` is refused (None: it fits), given one sample's largest
    activation; it holds about ``LIVE_TENSORS`` of those at once."""
    return _refusal(
        LIVE_TENSORS * BYTES_PER_VALUE * largest * batch,
        f"a forward at batch {batch} ({largest:,} values per sample in its largest activation)",
    )


def over_trace_budget(total: int, batch: int = 1) -> str | None:
    """Why a traced forward at ``batch`` is refused: tracing (the dependency graph, autograd) keeps every
    activation, ``total`` values per sample."""
    return _refusal(
        BYTES_PER_VALUE * total * batch,
        f"tracing the model at batch {batch} ({total:,} activation values per sample)",
    )


def activation_sizes(model, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(largest, total): values in the largest tensor one sample's forward makes (at least the input) and
    in all the tensors its modules output, found on the meta device: no memory is allocated, whatever
    the sizes. A model that cannot run on the meta device counts its input only."""
    import torch

    largest = total = math.prod(input_shape)

    def hook(module, inputs, out):
        nonlocal largest, total
        if list(module.children()):  # containers repeat their last child's output
            return
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                largest, total = max(largest, t.numel()), total + t.numel()

    state = {
        k: torch.empty_like(v, device="meta") for k, v in (*model.named_parameters(), *model.named_buffers())
    }
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    cached = [(m, dict(vars(m))) for m in model.modules()]
    try:
        with torch.no_grad():
            torch.func.functional_call(model, state, (torch.empty(1, *input_shape, device="meta"),))
    except Exception:  # noqa: BLE001 - an op without a meta kernel: the input bound is all we know
        pass
    finally:
        for h in handles:
            h.remove()
        _forget_meta(cached)
    return largest, total


def _forget_meta(cached: list) -> None:
    """Undo what a module's forward cached on itself during the meta run (YOLO's anchors and the shape
    they are for) where it left meta tensors: a later real forward of that shape would reuse them, and a
    ``.to()`` that moves them fails."""
    for module, before in cached:
        now = vars(module)
        if any(getattr(v, "is_meta", False) is True for v in now.values()):
            for name in [n for n in now if n not in before]:
                del now[name]
            now.update(before)


def over_param_budget(params: int, held: str = "its weights and their gradients") -> str | None:
    """Why a model of ``params`` parameters is refused (None: it fits): ``PARAM_COPIES`` of them are held
    (training: each weight and its gradient; a reader: the dense model and the pruned one)."""
    return _refusal(PARAM_COPIES * BYTES_PER_VALUE * params, f"a model of {params:,} parameters ({held})")


def over_images_budget(n: int, values: int) -> str | None:
    """Why ``n`` images of ``values`` values each, held at once (the INT8 calibration set), are refused."""
    return _refusal(BYTES_PER_VALUE * values * n, f"{n:,} images of {values:,} values each")


def cap_threads(threads: int | None) -> int | None:
    """A thread count for a runtime, at most the machine's cores (1,000 threads on 16 cores only thrash)."""
    return None if threads is None else max(1, min(threads, os.cpu_count() or 1))


def check_sizes(params: int, largest: int, total: int, measure_batch: int | None = None) -> None:
    """Refuse (UsageError naming the option) a run whose model, traced activations or latency-measurement
    batch would exceed the memory budget; what a reader of the run (``load``) would refuse too."""
    why = over_param_budget(params)
    if why:
        raise UsageError(f"the model is too large: {why}; check model_args", ("model_args",))
    why = over_trace_budget(total)
    if why:
        raise UsageError(
            f"the input is too large for this model: {why}; choose a smaller image_size", ("image_size",)
        )
    why = over_budget(largest, measure_batch) if measure_batch else None
    if why:
        raise UsageError(
            f"target_batch {measure_batch} is too large for measuring latencies: {why}", ("target_batch",)
        )

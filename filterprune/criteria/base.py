"""What every channel criterion is made of: the ``CRITERIA`` table (``catalog.py``), the ``Criterion`` base
class, the ``PruneContext`` it may use, and ``root_of`` (the layer whose filters a group removes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..catalog import CRITERIA
from ..data.source import DataSource
from ..masks import MaskConfig


@dataclass
class PruneContext:
    """What a criterion may use besides the model: data for data-driven scores, a seed for random ones."""

    example_inputs: torch.Tensor  # or an example.Example (any inputs: a detector's list of images)
    data: DataSource | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    batch_size: int = 64
    calib_batches: int = 8
    mask: MaskConfig | None = None  # compression, scope, reduce, IMP (mask criteria)
    ignored_layers: tuple = ()  # names or modules kept whole besides the output layers (--ignore-layers)
    loss: Callable | None = None  # the user's loss(model, batch) -> scalar (criterion taylor)
    batches: Iterable | None = None  # the batches ``loss`` takes, as the user's calib loader yields them
    deploy: Callable[[nn.Module], nn.Module] | None = None  # the network as timed (a detector: no NMS)


class Criterion:
    """Base class. ``score(group)`` returns one score per root output channel, or None to leave the
    group unpruned. ``default_scope`` is the allocation the method's paper uses. A ``sequential`` criterion
    measures the network as pruned so far: groups are scored and pruned one by one in execution order.
    ``reads``: the criterion-specific options it uses (keys of the option groups declared ``per_criterion``);
    such an option set for a criterion that does not read it is reported as ignored."""

    name = ""
    default_scope = "layerwise"
    sequential = False
    reads: tuple[str, ...] = ()

    def check(self, model: nn.Module) -> None:
        """Raise UsageError if this criterion cannot apply to the architecture (called before training)."""

    def prepare(self, model: nn.Module, ctx: PruneContext) -> None:
        """Gather statistics (data-driven criteria) before any group is scored."""

    def score(self, group) -> torch.Tensor | None:
        raise NotImplementedError


def root_of(group):
    """(module, output-channel indices) of the layer whose filters the group removes."""
    return group[0].dep.target.module, group[0].idxs


def make_criterion(name: str) -> Criterion:
    return CRITERIA.get(name)()

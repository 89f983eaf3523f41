"""What a task is made of: the ``Task`` base class that the pipeline calls wherever it used to assume a
classifier. A task says how its data and model are prepared and checked, how a training batch becomes a
loss, how a model is evaluated (a dict of metrics, ``headline`` among them choosing the kept epoch), whether
teacher outputs can be distilled, which example input traces the graph, and what is exported to ONNX.

A task is one file subclassing ``Task`` plus its line in ``TASKS`` (``filterprune/catalog.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from ..catalog import TASKS
from ..example import random_inputs

LABEL_FREE = ("l1", "magnitude", "slimming", "taylor", "random")  # read no classification batches


@dataclass(frozen=True)
class Step:
    """One training batch's result: the loss to minimise, how many examples it held, and how many of
    them the model got right (None where the task has no per-example score during training)."""

    loss: torch.Tensor
    examples: int
    correct: torch.Tensor | None = None


class Task:
    """Base class; ``name`` is its catalog name. ``metrics`` names every metric ``evaluate`` returns
    (key -> words for people), ``headline`` the one that chooses the kept epoch and heads the report."""

    name = ""
    headline = ""
    metrics: dict[str, str] = {}
    output_name = "output"  # the ONNX graph's output
    input_range: tuple[float, float] | None = None  # the inputs' values; None: normalised, N(0, 1)

    def check_config(self, cfg) -> None:
        """Refuse (UsageError) options this task cannot honour, before anything is built."""

    def check_model_name(self, name: str) -> None:
        """Refuse a model reference that cannot serve this task (before anything is built)."""

    def can_distill(self, model_name: str) -> bool:
        """Whether finetuning the model ``model_name`` can learn from the dense model's outputs (where it
        cannot, ``--distill`` is recorded as off)."""
        return False

    def prepare(self, cfg, given):
        """(data, spec, native) of a run: the data source, its ``ModelSpec`` and what the model's native
        input said."""
        raise NotImplementedError

    def check_probe(self, model: nn.Module, spec, ignore_layers=()) -> None:
        """Before training: the freshly built model runs on the task's input and gives its output."""

    def example_inputs(self, input_shape: tuple[int, ...]):
        """What traces the graph (pruning, counting): one image batch of ``input_shape``, in the task's
        ``input_range``."""
        return random_inputs((1, *input_shape), self.input_range)

    def step(self, net: nn.Module, teacher: nn.Module | None, batch, device, alpha: float, cfg) -> Step:
        """Forward one training batch (``teacher``'s outputs distilled with weight ``alpha``)."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, data, device, split: str = "test") -> dict | None:
        """The task's metrics on ``split`` (None on the ranks but 0 of a distributed run)."""
        raise NotImplementedError

    def criterion_refused(self, criterion: str) -> str | None:
        """Why ``criterion`` cannot prune for a task without class labels (it scores channels on
        classification batches), or None (taylor scores by the task's own loss: ``calibration``)."""
        if criterion in LABEL_FREE:
            return None
        return (
            f"criterion {criterion} scores channels on classification batches; task {self.name} prunes with "
            f"{', '.join(LABEL_FREE)}"
        )

    def calibration(self, data, device, cfg):
        """``(loss(model, batch), batches)`` that a loss-driven criterion (taylor) scores channels with: the
        task's own training loss (``step``, no teacher) on shuffled training batches without augmentation;
        None where the criterion's own classification batches serve."""
        loader = data.make_loader("train", cfg.batch_size, shuffle=True, seed=cfg.seed)
        return (lambda net, batch: self.step(net, None, batch, device, 0.0, cfg).loss), loader

    def deployable(self, model: nn.Module) -> nn.Module | None:
        """The module exported to ONNX and timed: the model itself, a wrapper that leaves the
        post-processing out, or None where no such export exists."""
        return model

    def report_metrics(self, metrics: dict | None) -> dict:
        """report.json's ``accuracy``/``top5`` of a model (its headline metric and the next one)."""
        names = list(self.metrics)
        m = metrics or {}
        return {"accuracy": m.get(names[0]), "top5": m.get(names[1]) if len(names) > 1 else None}


def make_task(name: str) -> Task:
    """The task by its catalog name (UsageError naming the valid ones)."""
    return TASKS.get(name)()

"""``filterprune.Pruner``: pruning step by step inside the user's own training loop.

    pruner = filterprune.Pruner(model, example_inputs, criterion="l1", sparsity=0.5, steps=5)
    for epoch in range(5):
        pruner.step()                                   # prunes the next share, in place
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)   # the old one holds the old tensors
        train_one_epoch(model, optimizer)               # the user's loop
    filterprune.export(model, "model.onnx", example_inputs)

No ignored layers to list (the layers producing any output are found and kept whole) and no counting
to do (each step says what it cut and the MACs before and after). Step i prunes to the i-th point of a
linear schedule measured against the *dense* network (``pruning/iterative.py``), so the last step lands
where one ``filterprune.prune`` call would; every step scores the network as it is then (after the
user's training), so data-driven criteria such as ``taylor`` see the recovered weights.
"""

from __future__ import annotations

import torch.nn as nn

from .api import _D, Pruned, setup
from .errors import UsageError
from .pruning.iterative import step_plans
from .pruning.shrink import prune as shrink
from .pruning.target import layer_costs


class Pruner:
    """Prunes ``model`` in place in ``steps`` calls of ``step()``. Keywords are ``filterprune.prune``'s
    (``target_macs``, ``ratios``, ``calib``, ``loss``, ``ignored_layers``, ``round_to``, ...)."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs,
        criterion: str = "l1",
        sparsity: float | None = None,
        *,
        steps: int = 1,
        **options,
    ):
        keys = {k: v for k, v in _PRUNE_DEFAULTS.items() if k not in options}
        unknown = sorted(set(options) - set(_PRUNE_DEFAULTS))
        if unknown:
            raise UsageError(f"Pruner() got unknown keyword(s): {', '.join(unknown)}", tuple(unknown))
        if options.get("inplace") is False:
            raise UsageError("Pruner prunes the model in place (give it a copy to keep one)", ("inplace",))
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise UsageError(f"steps must be an integer >= 1, got {steps!r}", ("steps",))
        self._job = setup(model, example_inputs, criterion, sparsity, **{**keys, **options})
        self.model = self._job.model
        self._plans = step_plans(self._job.plan, steps)
        self._dense = self._job.count()
        self._dense_macs = sum(c.macs() for c in layer_costs(self.model, self._job.inputs).values())
        self._dense_units: dict[str, int] | None = None
        self.history: list = []
        self.done = 0  # steps taken

    @property
    def steps(self) -> int:
        return len(self._plans)

    def step(self) -> Pruned:
        """Prune the next share (in place); returns what this step removed, with the dense and current
        counts (``.theoretical_speedup`` is against the dense model). After the last step: UsageError."""
        if self.done == self.steps:
            raise UsageError(f"all {self.steps} steps are done: the model is at its target", ("steps",))
        job, plan = self._job, self._plans[self.done]
        res = shrink(job.model, job.crit, plan, job.ctx, job.width, self._dense_units, self._dense_macs)
        self._dense_units = self._dense_units or res.units
        self.history += res.history
        self.done += 1
        return job.done(res, self._dense)

    def __repr__(self) -> str:
        return f"Pruner({type(self.model).__name__}, {self._job.criterion}, step {self.done}/{self.steps})"


_PRUNE_DEFAULTS = {
    "target_macs": None,
    "target_speedup": None,
    "target_latency": None,
    "ratios": None,
    "calib": None,
    "loss": None,
    "ignored_layers": (),
    "scope": None,
    "round_to": _D["round_to"],
    "layer_floor": _D["layer_floor"],
    "calib_batches": _D["calib_batches"],
    "compression": None,
    "seed": _D["seed"],
    "target_runtime": _D["target_runtime"],
    "target_batch": _D["target_batch"],
    "target_precision": _D["target_precision"],
    "threads": None,
    "device": "cpu",
    "inplace": True,
}

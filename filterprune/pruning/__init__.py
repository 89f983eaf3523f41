"""Structured pruning: dependency graph (graph), how many channels each group keeps (plan, target),
removal (shrink), iterative schedules (iterative). The public ``filterprune.prune(model, ...)`` over
these is ``filterprune.api.prune``."""

from .iterative import prune_in_steps  # noqa: F401
from .plan import PlanConfig  # noqa: F401
from .shrink import PruneResult, prune  # noqa: F401

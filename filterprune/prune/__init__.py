"""Structured pruning: dependency graph (graph), how many channels each group keeps (plan), removal
(shrink), and the pickle-free pruned checkpoint (checkpoint)."""
from .plan import PlanConfig  # noqa: F401
from .shrink import PruneResult, prune  # noqa: F401

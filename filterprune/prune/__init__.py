"""Structured pruning: dependency graph (graph), how many channels each group keeps (plan, target),
removal (shrink), iterative schedules (iterative), and the pickle-free pruned checkpoint (checkpoint).

The package is also the public ``filterprune.prune(model, example_inputs, ...)`` (``user.prune``): a
package attribute named like a function would be replaced by this subpackage as soon as it is imported,
so the subpackage itself is made callable.
"""
import sys
import types

from .iterative import prune_in_steps  # noqa: F401
from .plan import PlanConfig  # noqa: F401
from .shrink import PruneResult, prune  # noqa: F401


class _CallablePackage(types.ModuleType):
    def __call__(self, model, example_inputs, criterion="l1", sparsity=0.4, **kwargs):
        """Prune a module in hand through the dependency graph; see ``filterprune.user.prune``."""
        from ..user import prune as user_prune

        return user_prune(model, example_inputs, criterion, sparsity, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage

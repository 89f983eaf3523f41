"""Channel criteria: each scores the output channels of a dependency group (higher = keep).

Two families: ``structured/`` scores whole channels directly; ``mask/`` builds an unstructured mask
(SNIP, GraSP, SynFlow, IMP, magnitude, random) and reduces it to channel saliency. A criterion is one
file in either that subclasses ``Criterion`` (or ``MaskCriterion``, from ``mask/base.py``) and registers
itself in ``CRITERIA`` (both from ``base.py``, which is what such a file imports); the pruning pipeline
only calls ``prepare`` once and then ``score`` per group, so adding one never touches the pipeline.
"""

from __future__ import annotations

from . import mask, structured  # noqa: F401  (registration: every criterion file is imported)
from .base import CRITERIA, Criterion, PruneContext, make_criterion, root_of
from .mask.base import MaskCriterion

__all__ = ["CRITERIA", "Criterion", "MaskCriterion", "PruneContext", "make_criterion", "root_of"]

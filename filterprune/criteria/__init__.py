"""Channel criteria: each scores the output channels of a dependency group (higher = keep).

Two families: ``structured/`` scores whole channels directly; ``mask/`` builds an unstructured mask
(SNIP, GraSP, SynFlow, IMP, magnitude, random) and reduces it to channel saliency. A criterion is one
file in either that subclasses ``Criterion`` (from ``base.py``, or ``MaskCriterion``, from ``mask/base.py``)
plus its line in ``CRITERIA`` (``filterprune/catalog.py``), imported when first named; the pruning pipeline
only calls ``prepare`` once and then ``score`` per group, so adding one never touches the pipeline.
"""

from __future__ import annotations

from .base import CRITERIA, Criterion, PruneContext, make_criterion, root_of
from .mask.base import MaskCriterion

__all__ = ["CRITERIA", "Criterion", "MaskCriterion", "PruneContext", "make_criterion", "root_of"]

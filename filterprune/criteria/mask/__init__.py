"""The mask criteria: unstructured methods acting as channel criteria through ``MaskCriterion``
(``base.py``). A new unstructured method is one file here with a ``weight_scores`` (higher = keep) and
its line in ``filterprune/catalog.py``.
"""

from __future__ import annotations

from .base import MaskCriterion

__all__ = ["MaskCriterion"]

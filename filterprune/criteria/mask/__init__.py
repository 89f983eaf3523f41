"""The mask criteria: unstructured methods acting as channel criteria through ``MaskCriterion``
(``base.py``). A new unstructured method is one file here with a ``weight_scores`` (higher = keep) and
a registration, imported below.
"""

from __future__ import annotations

from . import grasp, imp, magnitude, random, snip, synflow  # noqa: F401  (registration)
from .base import MaskCriterion

__all__ = ["MaskCriterion"]

"""The table of datasets (``DATASETS``): a name -> a loader that returns ``ImageData``. Every dataset
file registers here; ``data/__init__.py`` looks names up in it."""

from __future__ import annotations

from ..registry import Registry

DATASETS: Registry = Registry("dataset", prefixes=("npz:", "imagefolder:"))

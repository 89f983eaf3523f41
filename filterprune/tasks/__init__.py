"""Tasks: what the pipeline does with a batch, a model's outputs and its metrics. ``classification`` (one
label per image) and ``detection`` (boxes per image); each is a ``Task`` subclass (``base.py``) in its own
file plus its line in ``TASKS`` (``filterprune/catalog.py``), imported when first named.
"""

from __future__ import annotations

from .base import TASKS, Step, Task, make_task

__all__ = ["TASKS", "Step", "Task", "make_task"]

"""``filterprune.export(...)`` and ``filterprune.bench(...)`` are functions whose names are also the
subpackages ``filterprune/export`` and ``filterprune/bench``. Importing a submodule sets it as an attribute
of its package, so whichever came last would win; instead those two packages are modules that can be
called: calling one calls the Python surface's function of the same name (``filterprune.ship``), and
``filterprune.export.convert`` and the like stay modules as before."""

from __future__ import annotations

import importlib
import sys
import types


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        name = self.__name__.rsplit(".", 1)[-1]
        return getattr(importlib.import_module("filterprune.ship"), name)(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Let the package ``module_name`` be called as ``filterprune.ship``'s function of its name."""
    sys.modules[module_name].__class__ = _CallableModule

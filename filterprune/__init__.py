"""filterprune: structured filter pruning with real speedup export.

The Python surface (``filterprune.api``): ``prune(model, example_inputs, ...)`` for a module in hand;
``compress(...)`` runs the pipeline (a ``CompressConfig``, or keyword fields with the user's own module
and DataLoaders); ``save(model, DIR)`` / ``load(DIR, trust_code=False, model=None)`` rebuild a saved
(pruned) model exactly, without pickle, and without importing user code unless told to.

The names are resolved on first use, so ``import filterprune`` (and the command line's ``list``)
does not import torch.
"""

__version__ = "0.1.0"

__all__ = ["CompressConfig", "compress", "load", "prune", "save"]


def __getattr__(name):
    if name in __all__:
        from . import api  # on first use: `import filterprune` and the CLI's parsing stay torch-free

        return getattr(api, name)
    raise AttributeError(f"module 'filterprune' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

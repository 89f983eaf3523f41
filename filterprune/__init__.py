"""filterprune: structured filter pruning with real speedup export.

Python surface (``filterprune.user``): ``prune(model, example_inputs, ...)`` for a module in hand;
``compress(...)`` runs the pipeline (a ``CompressConfig``, or keyword fields with the user's own module
and DataLoaders); ``save(model, DIR)`` / ``load(DIR, trust_code=False, model=None)`` rebuild a saved
(pruned) model exactly, without pickle, and without importing user code unless told to.
"""
__version__ = "0.1.0"


def load(path, trust_code: bool = False, model=None):
    """Rebuild a model saved by filterprune (a run folder, X.json or X.safetensors); see ``user.load``."""
    from .user import load as _load

    return _load(path, trust_code=trust_code, model=model)


def compress(cfg=None, **kwargs):
    """Run prune -> finetune -> ONNX -> benchmark -> report; see ``filterprune.user.compress``."""
    from .user import compress as _compress

    return _compress(cfg, **kwargs)


def save(model, folder, **kwargs):
    """Save a (pruned) module as safetensors + JSON; see ``filterprune.user.save``."""
    from .user import save as _save

    return _save(model, folder, **kwargs)


def __getattr__(name):
    if name == "prune":  # ``filterprune.prune(model, ...)``: the prune subpackage is callable (see its docstring)
        import importlib

        return importlib.import_module(f"{__name__}.prune")
    raise AttributeError(f"module 'filterprune' has no attribute {name!r}")

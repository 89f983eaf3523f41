"""filterprune: structured filter pruning with real speedup export.

Python surface: ``compress(CompressConfig(...))`` runs the pipeline; ``load(DIR)`` rebuilds a saved
(pruned) model exactly, without pickle.
"""
__version__ = "0.1.0"


def load(path):
    """Rebuild a model saved by filterprune (a run folder, X.json or X.safetensors)."""
    from .prune.checkpoint import load as _load

    return _load(path)


def compress(cfg):
    """Run prune -> finetune -> ONNX -> benchmark -> report; see ``filterprune.api.CompressConfig``."""
    from .api import compress as _compress

    return _compress(cfg)

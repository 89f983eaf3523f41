"""filterprune: structured filter pruning with real speedup export.

The Python surface (``filterprune.api``): ``prune(model, example_inputs, ...)`` for a module in hand;
``compress(...)`` runs the pipeline (a ``CompressConfig``, or keyword fields with the user's own module
and DataLoaders); ``save(model, DIR)`` / ``load(DIR, trust_code=False, model=None)`` rebuild a saved
(pruned) model exactly, without pickle, and without importing user code unless told to. ``Pruner``
prunes step by step inside the user's own loop; ``export(model, PATH, example_inputs)`` and
``bench(models, example_inputs)`` export (with parity) and time a module in hand.

The names are resolved on first use, so ``import filterprune`` (and the command line's ``list``)
does not import torch.
"""

import os as _os
import sys as _sys

__version__ = "0.1.0"

# onnxruntime reports telemetry to Microsoft from its native code (and keeps a device id under
# ~/.cache/Microsoft) unless ORT_DISABLE_TELEMETRY is set when it is imported: nothing filterprune does may
# reach the network. A host that imported onnxruntime before us gets its Python switch instead.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
if "onnxruntime" in _sys.modules and _os.environ["ORT_DISABLE_TELEMETRY"] == "1":
    getattr(_sys.modules["onnxruntime"], "disable_telemetry_events", lambda: None)()

__all__ = ["CompressConfig", "Pruner", "bench", "compress", "export", "load", "prune", "save"]
_HOMES = {"Pruner": "stepwise", "bench": "ship", "export": "ship"}  # the rest live in api


def __getattr__(name):
    if name in __all__:
        import importlib  # reason: on first use: `import filterprune` and the CLI's parsing stay torch-free

        home = importlib.import_module(f".{_HOMES.get(name, 'api')}", __name__)
        return getattr(home, name)
    raise AttributeError(f"module 'filterprune' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))

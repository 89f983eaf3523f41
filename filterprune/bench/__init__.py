"""Measuring models: MACs/params/seed FLOPs (counting), interleaved timing (latency, runners, quiet) and
`filterprune bench` (command): its targets (targets, onnx_cost), its rows (timing, memory_probe) and
its files (files), under its options (config). Calling the package, ``filterprune.bench(models,
example_inputs)``, times modules in hand (``filterprune.ship.bench``)."""

from ..callable_module import make_callable

make_callable(__name__)

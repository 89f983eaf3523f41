"""Measuring models: MACs/params/seed FLOPs (counting), interleaved timing (latency, runners, quiet) and
`filterprune bench` (command): its targets (targets, onnx_cost), its rows (timing, memory_probe) and
its files (files), under its options (config). ``filterprune.bench(models, example_inputs)``
(``filterprune.ship``) times modules in hand."""

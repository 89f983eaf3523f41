"""ONNX export (convert), its parity proofs (parity), INT8 (quantize) and `filterprune export` (command).
``filterprune.export(model, path, example_inputs)`` (``filterprune.ship``) exports a module in hand."""

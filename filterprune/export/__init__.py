"""ONNX export (convert), its parity proofs (parity), INT8 (quantize) and `filterprune export` (command).
Calling the package, ``filterprune.export(model, path, example_inputs)``, exports a module in hand
(``filterprune.ship.export``)."""

from ..callable_module import make_callable

make_callable(__name__)

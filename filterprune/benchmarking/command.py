"""`filterprune bench`: time compress output folders or ONNX files side by side and write the results
into a folder, the way `compress` writes its own."""

from __future__ import annotations

from pathlib import Path

from .. import outputs
from . import machine
from .config import BenchConfig
from .files import write_outputs
from .targets import variants_from
from .timing import run_bench


def bench(targets: list[Path], cfg: BenchConfig, out: Path, overwrite: bool = False) -> list[dict]:
    """Time ``targets`` and write ``out`` like ``compress`` does: staged and renamed into place (complete
    or absent), an existing non-empty folder refused unless ``overwrite``."""
    out = Path(out)
    outputs.check_target(out, overwrite)
    variants = variants_from(targets, cfg.precisions)
    rows = run_bench(variants, cfg)
    info = machine.describe()
    outputs.write_folder(out, lambda d: write_outputs(rows, d, info), overwrite)
    return rows

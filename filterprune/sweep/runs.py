"""One run of a sweep, wherever it executes: ``compress`` into ``DIR/runs/<run_id>``, and the cached
baseline that runs share. The local executor runs it in a ``python -m filterprune.sweep.worker``
process per run; a Ray task calls :func:`run` directly in a worker process that serves one task only.
"""

from __future__ import annotations

import json

from .. import inputs
from ..baseline import train_baseline
from ..config import CompressConfig
from ..pipeline import run as compress
from ..train import resolve_device


def compress_config(config: dict, out: str | None = None, overwrite: bool = False) -> CompressConfig:
    return CompressConfig.of(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}, out=out, overwrite=overwrite
    )


def run(job: dict) -> None:
    """``job``: {"config": resolved fields, "out": run folder, "overwrite": replace a damaged folder}."""
    compress(compress_config(job["config"], job["out"], job.get("overwrite", False)))


def prepare_baseline(config: dict) -> None:
    """Train (or find) the cached dense baseline a run starts from, so parallel runs that share it
    neither train it twice nor start from two different ones."""
    cfg = compress_config(config)
    data, spec, _ = inputs.prepare(cfg)  # the same data and spec as compress uses
    train_baseline(spec, data, cfg.baseline_config(), resolve_device(cfg.train.device))


def baseline_group(config: dict) -> str | None:
    """Runs with equal groups start from the same cached baseline (None: no baseline is trained)."""
    cfg = compress_config(config)
    ident = cfg.baseline_identity()
    return None if ident is None else json.dumps(ident, sort_keys=True)

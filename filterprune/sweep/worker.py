"""One run of a sweep: ``compress`` into ``DIR/runs/<run_id>``, in the process that executes it.

The local executor starts ``python -m filterprune.sweep.worker`` per run (the job as JSON on stdin,
stdout/stderr into the run's log), so that a run's crash or leaked memory never touches the sweep or
the next run, and a killed sweep takes its run down with it; a Ray task calls :func:`run` directly in
a worker process that serves one task only.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from ..guard import Terminated, finish, guarded

PR_SET_PDEATHSIG = 1  # linux prctl: a signal for this process when its parent dies


def compress_config(config: dict, out: str | None = None, overwrite: bool = False):
    from ..config import CompressConfig

    return CompressConfig.of(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()},
                             out=out, overwrite=overwrite)


def run(job: dict) -> None:
    """``job``: {"config": resolved fields, "out": run folder, "overwrite": replace a damaged folder}."""
    from ..pipeline import run

    run(compress_config(job["config"], job["out"], job.get("overwrite", False)))


def prepare_baseline(config: dict) -> None:
    """Train (or find) the cached dense baseline a run starts from, so parallel runs that share it
    neither train it twice nor start from two different ones."""
    from .. import sources
    from ..baseline import train_baseline
    from ..train import resolve_device

    cfg = compress_config(config)
    data, spec, _ = sources.prepare(cfg)  # the same data and spec as compress uses
    train_baseline(spec, data, cfg.baseline_config(), resolve_device(cfg.train.device))


def baseline_group(config: dict) -> str | None:
    """Runs with equal groups start from the same cached baseline (None: no baseline is trained)."""
    cfg = compress_config(config)
    ident = cfg.baseline_identity()
    return None if ident is None else json.dumps(ident, sort_keys=True)


def _die_with_parent(parent: int) -> None:
    """SIGTERM when the sweep process dies (even by SIGKILL): the run stops and removes its staging folder."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the run finishes on its own
        return
    if os.getppid() != parent:  # the parent died before the line above
        raise Terminated(128 + signal.SIGTERM)


def main() -> int:
    job = json.loads(sys.stdin.read())

    def action():
        _die_with_parent(job["parent_pid"])  # after guarded() installed the SIGTERM handler
        run(job)

    return finish(guarded(action, sigterm=True))  # the same one-line errors and exit codes as the CLI


if __name__ == "__main__":
    raise SystemExit(main())

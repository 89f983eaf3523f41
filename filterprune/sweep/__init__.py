"""Sweeps: a YAML grid of ``compress`` runs, run resumably into one folder.

    filterprune sweep CONFIG.yaml [--executor local|ray] [--resume] [--out DIR] [--dry-run]

``grid`` expands the file into runs whose ids hash their resolved config; ``store`` is the folder
(``DIR/sweep.json``, ``DIR/runs/<run_id>/``, ``DIR/results.csv``); ``executors`` start the runs that
have no ``report.json`` yet. Resuming skips finished runs, redoes unfinished ones from scratch, and
refuses a folder that holds another sweep.
"""

from __future__ import annotations

from pathlib import Path

from .. import limits
from ..data.torchvision_sets import missing
from ..errors import RunError, UsageError
from ..log import say
from .executors import CHECKS, EXECUTORS, Job, Outcome
from .grid import Sweep, load_sweep, run_id
from .store import SweepStore

__all__ = ["Sweep", "SweepStore", "load_sweep", "run_id", "sweep"]


def sweep(
    config_file: str | Path,
    executor: str = "local",
    resume: bool = False,
    out: str | Path | None = None,
    dry_run: bool = False,
    overrides: dict | None = None,
) -> Path:
    """Run every unfinished run of the sweep; returns the sweep folder. Exit-1 error if any run failed
    (the others are kept; ``resume`` retries the failed ones). ``overrides``: base keys replaced
    (``--set key=value``)."""
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    s = load_sweep(config_file, overrides)
    check_data(s)
    CHECKS.get(executor, lambda: None)()
    store = SweepStore(out if out is not None else Path("sweeps") / s.name)
    if dry_run:
        return _plan(s, store)
    store.open(s, resume)
    try:
        finished = store.finished_ids(s)
        jobs = _jobs(s, store, finished)
        say(
            f"sweep: {s.name} ({s.sweep_id}): {len(s.runs)} runs, {len(finished)} already finished, "
            f"{len(jobs)} to run ({executor}) in {store.root}/"
        )
        failed = _run_jobs(s, store, jobs, executor)
        results = store.write_results(s)
    finally:
        store.close()
    if failed:
        ids = ", ".join(o.job.run_id for o in failed)
        raise RunError(
            f"{len(failed)} of {len(jobs)} runs failed ({ids}); logs in {store.logs}/; the others "
            f"are in {store.runs}/ (--resume retries the failed ones)"
        )
    say(f"sweep: all {len(s.runs)} runs finished; table: {results}")
    print(results)
    return store.root


def _jobs(s: Sweep, store: SweepStore, finished: set[str]) -> list[Job]:
    """A job for each run not finished yet (an unfinished run's folder is redone from scratch)."""
    return [
        Job(
            r.run_id,
            r.label,
            r.config,
            store.run_dir(r.run_id),
            store.log_path(r.run_id),
            overwrite=store.run_dir(r.run_id).exists(),
        )
        for r in s.runs
        if r.run_id not in finished
    ]


def _run_jobs(s: Sweep, store: SweepStore, jobs: list[Job], executor: str) -> list[Outcome]:
    """Run ``jobs`` on ``executor``, saying each outcome as it comes and rewriting the results table after
    each finished run; returns the failed ones."""
    failed: list[Outcome] = []
    count = iter(range(1, len(jobs) + 1))

    def done(o: Outcome) -> None:
        i = next(count)
        if o.exit_code == 0 and store.finished(o.job.run_id):
            r = store.report(o.job.run_id)
            say(
                f"sweep: {i}/{len(jobs)} {o.job.run_id} ({o.job.label}): finished in {o.seconds:.0f}s, "
                f"top-1 {100 * r['dense']['accuracy']:.1f}% -> {100 * r['pruned']['accuracy']:.1f}%"
            )
            store.write_results(s)
        else:
            failed.append(o)
            say(
                f"sweep: {i}/{len(jobs)} {o.job.run_id} ({o.job.label}): FAILED (exit {o.exit_code}): "
                f"{o.error} [{o.job.log}]"
            )

    if jobs:
        EXECUTORS[executor](jobs, s.resources, done)
    return failed


def check_data(s: Sweep) -> None:
    """Every run's data can be found, checked before any run starts (each would fail the same way)."""
    for key in sorted({(r.config.get("dataset"), r.config.get("data_root")) for r in s.runs}, key=str):
        dataset, root = key
        if dataset is None:
            continue
        kind, _, path = dataset.partition(":")
        why = (
            f"{dataset}: {path} not found"
            if kind in ("imagefolder", "npz") and path and not Path(path).exists()
            else missing(dataset, Path(root or "."))
        )
        if why:
            raise UsageError(f"{s.file}: {why}; set data_root in the file or pass --set data_root=DIR")


def _plan(s: Sweep, store: SweepStore) -> Path:
    """--dry-run: the runs, their ids and which are finished, without writing anything."""
    found = store.existing_id()
    same = found == s.sweep_id
    if found is not None and not same:
        say(
            f"sweep: note: {store.root} holds another sweep ({found}); running this config there would be "
            "refused"
        )
    for r in s.runs:
        state = "finished" if same and store.finished(r.run_id) else "to run"
        print(f"{r.run_id}  {state:8s}  {limits.printable(r.label)}")
    say(f"sweep: {s.name} ({s.sweep_id}): {len(s.runs)} runs -> {store.root}/")
    return store.root

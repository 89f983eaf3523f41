"""The sweep folder: one ``compress`` output folder per run, keyed by run id, and the table over them.

    DIR/sweep.json          {"sweep_id", "config_file", "config" (resolved), "filterprune_version"}
    DIR/runs/<run_id>/      a complete `filterprune compress` folder; finished iff report.json is there
    DIR/logs/<run_id>.log   what the run printed (the last line says why a failed run failed)
    DIR/results.csv         one row per finished run, rewritten (atomically) after every run

A folder holds one sweep: another ``sweep_id`` is refused, never mixed. Runs publish themselves through
compress's staging folder + rename, so a killed run leaves only a hidden ``.<run_id>.partial-PID``
folder, which is never read as a result and is removed when the sweep opens the folder again. A lock
keeps two sweep processes out of one folder (the kernel drops it when its holder dies, even by SIGKILL).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from .. import __version__, limits, outputs
from ..errors import FilterpruneError, RunError, UsageError
from ..fileio import atomic_write_bytes, atomic_write_json, read_small_json
from ..log import say
from ..reporting.schema import FILE as REPORT
from ..reporting.schema import Report, read_report
from .grid import Sweep

# always in results.csv (with any other field that varies across the sweep), then the metrics
ID_COLUMNS = (
    "model",
    "dataset",
    "criterion",
    "sparsity",
    "target_macs",
    "compression",
    "scope",
    "mask_scope",
    "mode",
    "imp_iterations",
    "steps",
    "epochs",
    "finetune_epochs",
    "seed",
)


class SweepStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.runs = self.root / "runs"
        self.logs = self.root / "logs"
        self._lock: IO[str] | None = None  # the open .sweep.lock while this sweep holds it

    # ------------------------------------------------------------------------------- opening
    def existing_id(self) -> str | None:
        """The sweep_id recorded in the folder (None: no sweep there yet)."""
        meta = self.root / "sweep.json"
        if not meta.is_file():
            if self.root.is_dir() and any(p.name != ".sweep.lock" for p in self.root.iterdir()):
                raise UsageError(
                    f"{self.root} exists, is not empty and holds no sweep.json: not a sweep folder "
                    "(choose another --out)"
                )
            if self.root.exists() and not self.root.is_dir():
                raise UsageError(f"sweep folder {self.root} is a file")
            return None
        try:
            sweep_id = read_small_json(meta, "sweep description")["sweep_id"]
        except (FilterpruneError, KeyError, TypeError):
            raise UsageError(f"{meta} is unreadable or has no sweep_id: not a sweep folder") from None
        if not isinstance(sweep_id, str):
            raise UsageError(f"{meta}: sweep_id is not a string: not a sweep folder")
        return sweep_id

    def open(self, sweep: Sweep, resume: bool) -> None:
        """Start the sweep in this folder, or (``resume``) continue the same sweep; refuse anything else."""
        found = self.existing_id()
        takeover = found is not None and found != sweep.sweep_id and resume and not self._any_finished()
        if found is not None and found != sweep.sweep_id and not takeover:
            other = limits.show(
                read_small_json(self.root / "sweep.json", "sweep description").get("config_file", "?")
            )
            raise UsageError(
                f"{self.root} holds another sweep ({found}, from {other}); {sweep.file} is sweep "
                f"{sweep.sweep_id}: refusing to mix their results (choose another --out)"
            )
        if found is not None and not resume:
            done = len(self.finished_ids(sweep))
            raise UsageError(
                f"{self.root} already holds this sweep ({done} of {len(sweep.runs)} runs finished); "
                "pass --resume to continue it"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        if takeover:  # under the lock: no other sweep is running there
            say(
                f"sweep: note: nothing of sweep {found} finished in {self.root}; "
                f"resuming there as {sweep.sweep_id}"
            )
            self._clear()
            found = None
        if found is None:
            atomic_write_json(
                self.root / "sweep.json",
                {
                    "sweep_id": sweep.sweep_id,
                    "config_file": sweep.file,
                    "config": sweep.resolved(),
                    "filterprune_version": __version__,
                },
            )
        self.runs.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.remove_leftovers(sweep)

    def _any_finished(self) -> bool:
        return self.runs.is_dir() and any((d / "report.json").is_file() for d in self.runs.iterdir())

    def _clear(self) -> None:
        """A folder where nothing finished (every run failed, e.g. on a wrong data path) is taken over."""
        for sub in (self.runs, self.logs):
            if sub.is_dir():
                shutil.rmtree(sub)
        (self.root / "sweep.json").unlink(missing_ok=True)

    def _take_lock(self) -> None:
        import fcntl

        f = open(self.root / ".sweep.lock", "a+")  # noqa: SIM115 (held open while the sweep runs)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise UsageError(f"{self.root} is in use by another running sweep") from None
        self._lock = f

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def remove_leftovers(self, sweep: Sweep) -> list[Path]:
        """Staging folders of runs that were killed (their process is gone) are removed, never read."""
        return [p for r in sweep.runs for p in outputs.sweep_stale(self.run_dir(r.run_id))]

    # ---------------------------------------------------------------------------------- runs
    def run_dir(self, rid: str) -> Path:
        return self.runs / rid

    def log_path(self, rid: str) -> Path:
        return self.logs / f"{rid}.log"

    def finished(self, rid: str) -> bool:
        """A run is finished iff its report.json is there and reads as a report; a damaged one (cut short,
        edited, over the bounds) is a run to redo, never a result. One that a newer filterprune wrote is
        neither: its UsageError stops the sweep rather than replace a result this version cannot read."""
        if not (self.run_dir(rid) / REPORT).is_file():
            return False
        try:
            self.report(rid)
        except RunError:
            return False
        return True

    def finished_ids(self, sweep: Sweep) -> set[str]:
        return {r.run_id for r in sweep.runs if self.finished(r.run_id)}

    def report(self, rid: str) -> Report:
        return read_report(self.run_dir(rid))

    # ------------------------------------------------------------------------------- results
    def write_results(self, sweep: Sweep) -> Path:
        """results.csv: one row per finished run, in the sweep's order."""
        varying = [k for k in sweep.runs[0].config if len({json.dumps(r.config[k]) for r in sweep.runs}) > 1]
        config_cols = list(ID_COLUMNS) + [k for k in varying if k not in ID_COLUMNS]
        rows = [
            {"run_id": r.run_id, **result_row(self.report(r.run_id), config_cols)}
            for r in sweep.runs
            if self.finished(r.run_id)
        ]
        columns = ["run_id"] + config_cols + [c for c in METRIC_COLUMNS]
        extra = [c for row in rows for c in row if c not in columns]
        columns += list(dict.fromkeys(extra))  # latency columns: whatever runtimes and batch sizes were timed
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path = self.root / "results.csv"
        atomic_write_bytes(path, buf.getvalue().encode())
        return path


METRIC_COLUMNS = (
    "dense_accuracy",
    "pruned_accuracy",
    "masked_accuracy",
    "dense_top5",
    "pruned_top5",
    "masked_top5",
    "dense_params",
    "pruned_params",
    "masked_nonzero_params",
    "dense_macs",
    "pruned_macs",
    "dense_flops",
    "pruned_flops",
    "masked_flops",
    "masked_flop_fraction",
    "masked_weight_density",
    "channel_sparsity",
    "theoretical_speedup",
    "seconds",
)
COST_KEYS = ("accuracy", "top5", "params", "macs", "flops")
MASKED_KEYS = ("accuracy", "top5", "nonzero_params", "flops", "flop_fraction", "weight_density")


def result_row(report: Report, config_cols) -> dict:
    """The flat row of one run's report.json: what it was (from its config) and what it measured. A config
    field the report lacks is an empty cell."""
    cfg, masked = report["config"], report["masked"]
    row = {k: _cell(cfg.get(k)) for k in config_cols}
    row["sparsity"] = _cell(report["sparsity"])  # as asked, or as found for target_macs
    row["scope"] = _cell(report["scope"])  # as given, or the criterion's default
    if masked:
        row["compression"] = _cell(masked["compression"])
    parts: tuple[tuple[str, Mapping[str, Any] | None, tuple[str, ...]], ...] = (
        ("dense", report["dense"], COST_KEYS),
        ("pruned", report["pruned"], COST_KEYS),
        ("masked", masked, MASKED_KEYS),
    )
    for part, section, keys in parts:
        for k in keys:
            row[f"{part}_{k}"] = _cell(section[k]) if section else ""
    row["channel_sparsity"] = _cell(report["channel_sparsity"])
    row["theoretical_speedup"] = _cell(report["theoretical_speedup"])
    times = [v for v in report["timings_s"].values() if type(v) in (int, float)]
    row["seconds"] = round(sum(times), 1)
    for lat in report["latency"]:
        precision = lat.get("precision", "fp32")
        key = f"{lat['runtime']}_{lat['device']}_b{lat['batch_size']}"
        key += "" if precision == "fp32" else f"_{precision}"
        row[f"{key}_dense_ms"], row[f"{key}_pruned_ms"] = _cell(lat["dense_ms"]), _cell(lat["pruned_ms"])
        row[f"{key}_speedup"] = _cell(lat["speedup"])
    return row


def _cell(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else ("" if value is None else value)

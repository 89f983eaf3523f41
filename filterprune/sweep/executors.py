"""Where a sweep's runs execute. Every executor takes the runs still to do and reports each one as it
ends; the runs write their results themselves, into the same store, so executors differ only in how
they start a run.

- ``local``: one run at a time, each in a fresh ``python -m filterprune.sweep.worker`` process that
  dies with the sweep (SIGKILL included), so a killed sweep leaves at most one unfinished run, whose
  staging folder the next sweep removes before redoing it.
- ``ray``: each run a Ray task (``resources`` in the sweep file: ``num_cpus``, ``num_gpus`` share) in a
  worker process used for that task only; each distinct baseline is trained once first, and the runs
  that need it wait for it. ``ray.init()`` joins the cluster named by ``RAY_ADDRESS`` or starts a local
  one; on several machines DIR and ``FILTERPRUNE_CACHE`` must be on storage they share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError, UsageError
from ..guard import guarded
from . import runs


@dataclass(frozen=True)
class Job:
    run_id: str
    label: str
    config: dict
    out: Path
    log: Path
    overwrite: bool  # a folder without report.json is in the way (damaged by hand): replace it

    def to_dict(self) -> dict:
        return {"config": self.config, "out": str(self.out), "overwrite": self.overwrite}


@dataclass(frozen=True)
class Outcome:
    job: Job
    exit_code: int
    error: str  # the failure's last line ("" when it finished)
    seconds: float


Done = Callable[[Outcome], None]


def _last_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:300] if lines else ""


def _header(job: Job, how: str) -> None:
    with job.log.open("a") as f:
        f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} run {job.run_id} ({job.label}) via {how}\n")


# ------------------------------------------------------------------------------------------ local
def run_local(jobs: list[Job], resources: dict, done: Done) -> None:
    for job in jobs:
        _header(job, f"local worker of pid {os.getpid()}")
        payload = json.dumps({**job.to_dict(), "parent_pid": os.getpid()})
        start = time.perf_counter()
        with job.log.open("a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "filterprune.sweep.worker"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                proc.communicate(payload)
            except BaseException:  # Ctrl-C, SIGTERM: stop the run too (it removes its staging folder)
                proc.terminate()
                proc.wait()
                raise
        code = proc.returncode
        done(Outcome(job, code, "" if code == 0 else _last_line(job.log), time.perf_counter() - start))


# -------------------------------------------------------------------------------------------- ray
def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'filterprune[ray]'") from None
    return ray


def _ray_run(job: dict, cwd: str, env: dict, baseline_ready=None) -> tuple[int, str]:
    """A Ray task: one run, its output into its log; returns (exit code, error line)."""
    os.chdir(cwd)  # relative paths in the config mean what they mean to the sweep
    os.environ.update(env)
    with open(job["log"], "a") as log:
        stdout, stderr = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:  # the CLI's own guard: the same one-line errors and exit codes as a local run
            code = guarded(lambda: runs.run(job))
        finally:
            sys.stdout, sys.stderr = stdout, stderr
    return code, _last_line(Path(job["log"])) if code else ""


def _ray_baseline(config: dict, cwd: str, env: dict) -> str:
    """A Ray task: the shared baseline; a failure here is left for the runs to meet (and log)."""
    os.chdir(cwd)
    os.environ.update(env)
    try:
        runs.prepare_baseline(config)
        return ""
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def check_ray() -> None:
    _import_ray()


def run_ray(jobs: list[Job], resources: dict, done: Done) -> None:
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:  # workers import the same filterprune as this process, whatever is installed
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        try:
            ray.init(
                log_to_driver=False,
                configure_logging=False,
                include_dashboard=False,
                runtime_env={"env_vars": {"PYTHONPATH": path}},
            )
        except Exception as e:  # ray raises a plain Exception for a node that did not start in time
            raise RunError(
                f"ray: could not start or join a cluster: {(str(e).splitlines() or [''])[0]}"
            ) from None
    refs: dict = {}
    try:
        opts = {"num_cpus": resources.get("num_cpus", 1), "num_gpus": resources.get("num_gpus", 0)}
        have = ray.cluster_resources()
        for key, kind in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
            if opts[key] > have.get(kind, 0):
                raise UsageError(
                    f"resources.{key} {opts[key]:g} is more than the Ray cluster has "
                    f"({have.get(kind, 0):g} {kind}): no run could ever start"
                )
        cwd = os.getcwd()
        env = {k: os.environ[k] for k in ("FILTERPRUNE_CACHE",) if k in os.environ}
        run_task = ray.remote(max_calls=1)(_ray_run).options(**opts)
        baseline_task = ray.remote(max_calls=1)(_ray_baseline).options(**opts)
        baselines: dict[str | None, Any] = {}  # group -> its task's ref; None (no baseline) is never a key
        for job in jobs:
            group = runs.baseline_group(job.config)
            if group is not None and group not in baselines:
                baselines[group] = baseline_task.remote(job.config, cwd, env)
        starts = {}
        for job in jobs:
            _header(job, "ray task")
            ref = run_task.remote(
                {**job.to_dict(), "log": str(job.log)},
                cwd,
                env,
                baselines.get(runs.baseline_group(job.config)),
            )
            refs[ref], starts[ref] = job, time.perf_counter()
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            job = refs.pop(ready[0])
            try:
                code, error = ray.get(ready[0])
            except ray.exceptions.RayError as e:  # the worker died (out of memory, killed)
                code, error = 1, f"ray: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            done(Outcome(job, code, error, time.perf_counter() - starts[ready[0]]))
    finally:
        for ref in refs:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


EXECUTORS = {"local": run_local, "ray": run_ray}
CHECKS = {"ray": check_ray}  # fail before anything is written when an executor cannot run here

"""The process of one local run: the local executor starts ``python -m filterprune.sweep.worker`` per
run (the job as JSON on stdin, stdout/stderr into the run's log), so that a run's crash or leaked memory
never touches the sweep or the next run, and a killed sweep takes its run down with it. The run itself
is ``runs.run``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from ..guard import Terminated, finish, guarded
from .runs import run

PR_SET_PDEATHSIG = 1  # linux prctl: a signal for this process when its parent dies


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

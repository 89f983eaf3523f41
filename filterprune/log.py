"""Messages go through ``logging``: the library logs to the ``filterprune`` logger (a library user can
silence or capture it like any other); the command line shows its records on stderr as one
``[filterprune] ...`` line each. Under ``--distributed`` only rank 0 speaks."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

from . import limits

log = logging.getLogger("filterprune")


def say(msg: str) -> None:
    from . import distributed  # imports torch: logging stays cheap for the CLI and the torch-free config

    if distributed.is_main():  # --distributed: rank 0 speaks for all; a path's newlines stay escaped
        log.info(limits.printable(msg))


def quiet() -> None:
    """``filterprune --quiet``: only warnings and errors on stderr, no progress bars."""
    log.setLevel(logging.WARNING)


def progress_bars() -> bool | None:
    """tqdm's ``disable``: None shows bars on a terminal only; True hides them under ``--quiet``."""
    return True if log.level == logging.WARNING else None


@contextmanager
def to_stderr():
    """For the duration of a command: INFO records of ``filterprune.*`` on stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[filterprune] %(message)s"))
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # a host application's root handlers do not print the lines twice
    try:
        yield
    finally:
        handler.flush()
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate

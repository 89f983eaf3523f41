"""DataLoader worker processes that die (a signal, the out-of-memory killer, a crash in native code) end the
command in one line: a ``RunError`` naming the worker, never torch's traceback or an "internal error".

torch says it in three ways: a RuntimeError from its SIGCHLD handler, raised wherever the main process is
(in a model's forward too); a RuntimeError when a batch does not come; or, when the worker is not reaped
yet, the broken pipe itself (ConnectionResetError, EOFError) out of its iterator. Its iterator also stays
watched while anything holds it (a traceback, a reference cycle), and raises again at every later SIGCHLD,
anywhere in the caller's program: so every iterator with a dead worker is shut down, with SIGCHLD held
until that is done. No torch import: the CLI's start stays light.
"""

from __future__ import annotations

import contextlib
import gc
import re
import signal
import threading
import time
import traceback

from .errors import RunError

_SAID = re.compile(
    r"DataLoader worker \(pids?\(?s?\)? ?([^)]*)\) "
    r"(is killed by signal: [^.]+|exited unexpectedly(?: with exit code -?\d+)?)"
)
REAP_S = 1.0  # how long a broken pipe waits for its worker's exit to be seen


def _chain(e: BaseException | None):
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _iterators(e: BaseException):
    """torch's multi-process DataLoader iterators in the frames ``e`` (and what caused it) unwound."""
    for link in _chain(e):
        tb = link.__traceback__
        while tb is not None:
            it = tb.tb_frame.f_locals.get("self")
            if type(it).__name__ == "_MultiProcessingDataLoaderIter":
                yield it
            tb = tb.tb_next


def _dead(e: BaseException) -> tuple[str, str] | None:
    """(pid, how it ended) of a worker of an iterator in ``e``'s frames that has died, waiting up to
    ``REAP_S`` for the exit to be seen (``is_alive`` reaps it)."""
    workers = [w for it in _iterators(e) for w in getattr(it, "_workers", [])]
    deadline = time.monotonic() + REAP_S
    while workers:
        for w in workers:
            if not w.is_alive() and w.exitcode:
                code = w.exitcode
                how = f"exited with {code}" if code > 0 else f"was killed by {signal.Signals(-code).name}"
                return str(w.pid), how
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return None


def worker_died(e: BaseException) -> RunError | None:
    """The one-line error for an exception a dead DataLoader worker caused; None for any other."""
    said = _SAID.search(str(e)) if isinstance(e, RuntimeError) else None
    found = (said[1].strip(), said[2].replace("is killed", "was killed")) if said else None
    if found is None and isinstance(e, (ConnectionError, EOFError)):
        found = _dead(e)
    if found is None:
        return None
    return RunError(
        f"a data-loading worker process (pid {found[0]}) {found[1]}, so the run stopped (out of memory? "
        "FILTERPRUNE_WORKERS=0 reads the images in the main process)"
    )


@contextlib.contextmanager
def _sigchld_held():
    main = threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_sigmask")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD}) if main else None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def workers_watched():
    """A DataLoader worker that dies inside this block is a ``RunError`` (:func:`worker_died`), and the
    iterator it belonged to is let go (its other workers shut down, its pids no longer watched)."""
    try:
        yield
        return
    except (RuntimeError, ConnectionError, EOFError) as e:
        died = _settle(e)
        if died is None:
            raise
    raise died from None


def _settle(e: BaseException) -> RunError | None:
    """:func:`worker_died` of ``e``, its iterators let go, with SIGCHLD held. A SIGCHLD that came before it
    was held may still run torch's handler meanwhile, which raises the same death again: then once more."""
    for _ in range(3):
        try:
            with _sigchld_held():
                died = worker_died(e)
                if died is not None:
                    _let_go(e)
                return died
        except RuntimeError as again:
            if _SAID.search(str(again)) is None:
                raise
    return worker_died(e)


def _let_go(e: BaseException) -> None:
    """Clear the frames ``e`` unwound, then shut down every multi-process DataLoader iterator still running
    with a dead worker (torch would raise for it at each later SIGCHLD)."""
    for link in _chain(e):
        traceback.clear_frames(link.__traceback__)
    gc.collect()  # iterators only the cleared frames held, in reference cycles: shut down by their __del__
    for obj in gc.get_objects():
        if type(obj).__name__ != "_MultiProcessingDataLoaderIter" or getattr(obj, "_shutdown", True):
            continue
        if any(not w.is_alive() for w in getattr(obj, "_workers", [])):
            obj._shutdown_workers()

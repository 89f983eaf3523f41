"""The command-line contract, shared by the CLI and every sweep executor: each warning one line, every
failure one line on stderr and an exit code (2 usage, 1 runtime, 130 interrupted, 143 terminated), never a
traceback (``FILTERPRUNE_DEBUG=1`` shows one), messages of the ``filterprune`` logger on stderr."""

from __future__ import annotations

import os
import signal
import sys
import threading
import warnings

from .dataworkers import workers_watched
from .errors import FilterpruneError
from .limits import is_oom, printable
from .log import to_stderr

_OUT_OF_MEMORY = (
    "out of memory (lower --batch-size, or use a smaller model; a lower FILTERPRUNE_MEMORY_GB makes "
    "filterprune refuse such sizes before it starts)"
)


def _print_warning(message, category, filename, lineno, file=None, line=None):
    print(f"[filterprune] warning: {one_line(str(message))}", file=sys.stderr)


def one_line(message: str) -> str:
    """User-supplied values (a path, a flag) may hold newlines or control characters: escape them (and cut
    a message that quotes a huge value)."""
    return printable(message, 4000).strip()


class Terminated(SystemExit):
    """SIGTERM (or the sweep's parent gone): unwinds like Ctrl-C, so staging folders are cleaned up."""


class Exit(SystemExit):
    """An exit filterprune itself asks for (``--help``, ``--version``). Any other ``SystemExit`` comes
    from user code (a factory, a model's forward) and is a failure like any other."""


def _terminated(signum, frame):
    raise Terminated(128 + signum)


def ended(e: BaseException) -> str:
    """How user code ended, in words: "called sys.exit(3)", "raised ValueError: ..."."""
    if isinstance(e, SystemExit):
        if e.code is None or isinstance(e.code, int):
            return f"called sys.exit({'' if e.code is None else e.code})"
        return f"called sys.exit({one_line(str(e.code))[:200]!r})"
    text = (str(e).splitlines() or [""])[0][:200]
    return f"raised {type(e).__name__}: {text}" if text else f"raised {type(e).__name__}"


def stray_threads() -> list[threading.Thread]:
    """Non-daemon threads still running besides the main one (started by user code: they would keep the
    process alive after its work is done)."""
    return [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]


def finish(code: int) -> int:
    """The exit status of a command-line process; when user code left non-daemon threads running, the
    process ends here anyway (with a warning), instead of hanging after "done"."""
    left = stray_threads()
    if not left:
        return code
    print(
        f"[filterprune] warning: stopped {len(left)} thread(s) that the model's code left running "
        f"(e.g. {one_line(left[0].name)[:80]})",
        file=sys.stderr,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def guarded(action, sigterm: bool = False) -> int:
    """Run ``action`` under the command-line contract: each warning one line, every failure one line
    on stderr and an exit code (2 usage, 1 runtime, 130 interrupted), never a traceback."""
    with warnings.catch_warnings():  # every run says its own warnings, even a second run in one process
        warnings.simplefilter("always", UserWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")
        warnings.filterwarnings("ignore", category=UserWarning, module="onnxruntime")
        warnings.showwarning = _print_warning
        if sigterm:
            signal.signal(signal.SIGTERM, _terminated)
        with to_stderr():
            return _guarded(action)


def _guarded(action) -> int:
    try:
        with workers_watched():  # a DataLoader worker killed: one line (wherever torch notices it)
            action()
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
        return 0
    except FilterpruneError as e:
        print(f"filterprune: error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("filterprune: interrupted", file=sys.stderr)
        return 130
    except (Exit, Terminated) as e:  # --help / --version, SIGTERM
        if isinstance(e, Terminated):
            print("filterprune: terminated", file=sys.stderr)
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 1
    except SystemExit as e:  # user code (a model's forward) called sys.exit: a failure, whatever the code
        print(f"filterprune: error: the model's code {ended(e)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `filterprune list models | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        print(f"filterprune: error: {_OUT_OF_MEMORY}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permission denied, ...: the environment, not a bug
        where = f": {e.filename}" if e.filename else ""
        print(
            f"filterprune: error: {one_line(f'{e.strerror or str(e) or type(e).__name__}{where}')}",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # a bug: still one line, the traceback only on request
        if is_oom(e):  # torch, CUDA and onnxruntime say it in a RuntimeError of their own
            print(f"filterprune: error: {_OUT_OF_MEMORY}", file=sys.stderr)
            return 1
        if os.environ.get("FILTERPRUNE_DEBUG"):
            raise
        first = one_line(str(e))[:300]
        print(
            f"filterprune: internal error: {type(e).__name__}: {first} (set FILTERPRUNE_DEBUG=1 for the "
            "traceback)",
            file=sys.stderr,
        )
        return 1
    except BaseException as e:  # noqa: BLE001 - not an Exception: raised by user code, never by filterprune
        if os.environ.get("FILTERPRUNE_DEBUG"):
            raise
        print(f"filterprune: error: the model's code {ended(e)}", file=sys.stderr)
        return 1

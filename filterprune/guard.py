"""The command-line contract, shared by the CLI and every sweep executor: each warning one line, every
failure one line on stderr and an exit code (2 usage, 1 runtime, 130 interrupted, 143 terminated), never a
traceback (``FILTERPRUNE_DEBUG=1`` shows one), messages of the ``filterprune`` logger on stderr."""
from __future__ import annotations

import os
import signal
import sys
import warnings

from .errors import FilterpruneError
from .limits import printable
from .log import to_stderr


def _print_warning(message, category, filename, lineno, file=None, line=None):
    print(f"[filterprune] warning: {one_line(str(message))}", file=sys.stderr)


def one_line(message: str) -> str:
    """User-supplied values (a path, a flag) may hold newlines or control characters: escape them (and cut
    a message that quotes a huge value)."""
    return printable(message, 4000).strip()


def _terminated(signum, frame):  # SIGTERM unwinds like Ctrl-C, so staging folders are cleaned up
    raise SystemExit(128 + signum)


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
        action()
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
        return 0
    except FilterpruneError as e:
        print(f"filterprune: error: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("filterprune: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help / --version, SIGTERM
        if isinstance(e.code, int) and e.code > 128:
            print("filterprune: terminated", file=sys.stderr)
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 1
    except BrokenPipeError:  # `filterprune list models | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        print("filterprune: error: out of memory (lower --batch-size, or use a smaller model)", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permission denied, ...: the environment, not a bug
        where = f": {e.filename}" if e.filename else ""
        print(f"filterprune: error: {one_line(f'{e.strerror or str(e) or type(e).__name__}{where}')}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, the traceback only on request
        if os.environ.get("FILTERPRUNE_DEBUG"):
            raise
        first = one_line(str(e))[:300]
        print(f"filterprune: internal error: {type(e).__name__}: {first} (set FILTERPRUNE_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1

"""File helpers every output goes through: write-then-rename (a killed run never leaves a torn file),
temporaries that the next writer sweeps, bounded reading of small JSON files, and the cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from . import safeload
from .errors import RunError

MAX_JSON_BYTES = 64 << 20  # descriptions and reports are small; refuse to parse anything huge


def cache_dir() -> Path:
    """Where trained baselines and latency tables are kept (``FILTERPRUNE_CACHE``)."""
    return Path(os.environ.get("FILTERPRUNE_CACHE", Path.home() / ".cache" / "filterprune"))


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (its staging folders and temporaries are then left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[^.]+\.tmp$")


def temp_path(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` with normal (umask) permissions, for write-then-rename. Its name
    holds this process's id, so the temporaries of a killed process (``.NAME.PID.XXXX.tmp``) are
    recognised and removed by the next write to the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.chmod(tmp, 0o666 & ~umask())
    return fd, tmp


def sweep_temporaries(folder: Path) -> list[Path]:
    """Remove the write-then-rename temporaries that killed processes left in ``folder``."""
    gone: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return gone
    for e in entries:
        m = _TEMP.match(e.name)
        if (
            m
            and int(m["pid"]) != os.getpid()
            and not alive(int(m["pid"]))
            and e.is_file(follow_symlinks=False)
        ):
            Path(e.path).unlink(missing_ok=True)
            gone.append(Path(e.path))
    return gone


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: a killed run never leaves a torn file."""
    fd, tmp = temp_path(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk: say which file could not be written
        Path(tmp).unlink(missing_ok=True)
        if e.filename:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def sha256_file(path: Path) -> str:
    """The weights' digest, stored in the JSON side: a torn, truncated or swapped weights file is refused."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_small_json(path: Path, what: str):
    """Parse a JSON file that should be small (ours, or handed to us): unreadable, corrupt, deeply nested
    or huge files, and values over ``safeload``'s bounds (a 50 MB string, 200,000 list entries, a
    400-digit integer), are one RunError naming the file and ``what`` it should have been."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ValueError(f"larger than {MAX_JSON_BYTES} bytes")
        return safeload.load_json(path.read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise RunError(f"{path}: unreadable {what} ({msg})") from None

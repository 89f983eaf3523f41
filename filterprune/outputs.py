"""Output folders that are either complete or absent, and never lost to a rerun or a crash.

A command builds its folder under a hidden staging name beside the target (``.NAME.partial-PID``) and
renames it into place when everything is written. A SIGKILL leaves only that hidden folder, which the
next run for the same target removes (its PID is gone). Replacing an existing folder (``--overwrite``)
first renames the old one aside, so at no instant does neither exist under a findable name.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

from . import distributed
from . import serialization as ckpt
from .errors import FilterpruneError, RunError, UsageError
from .fileio import alive

_STALE = re.compile(r"^\.(?P<name>.+)\.(?:partial|replaced)-(?P<pid>\d+)$")


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse a target that holds another run's results (unless ``overwrite``) or cannot be written."""
    sweep_stale(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise UsageError(
            f"output folder {out} already exists and is not empty (pass --overwrite to replace it)"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} is a file, not a folder")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot create output folder {out}: {parent} is not a writable folder")


def check_cache(cache: Path) -> None:
    """Refuse to start a run whose trained baseline could not be cached (say so before training, and name
    the variable that moves the cache)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        ok = cache.is_dir() and os.access(cache, os.W_OK | os.X_OK)
    except OSError:
        ok = False
    if not ok:
        raise UsageError(f"the cache folder {cache} is not a writable folder; set FILTERPRUNE_CACHE to one")


def sweep_stale(out: Path) -> list[Path]:
    """Clean up after runs for ``out`` that were killed: their staging folders go; an old folder that
    ``--overwrite`` had renamed aside goes back to ``out`` if the new one never arrived. Returns what
    was touched."""
    touched: list[Path] = []
    if not out.parent.is_dir():
        return touched
    for p in sorted(out.parent.iterdir()):
        m = _STALE.match(p.name)
        if not m or m["name"] != out.name or int(m["pid"]) == os.getpid() or alive(int(m["pid"])):
            continue
        if ".replaced-" in p.name and not out.exists():
            os.replace(p, out)
        else:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        touched.append(p)
    return touched


def staging_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


def publish(staging: Path, out: Path, overwrite: bool = False) -> Path:
    """Move the finished ``staging`` folder to ``out``; returns where it went.

    Without ``overwrite`` a folder that appeared meanwhile (another run) is never replaced: the rename
    refuses a non-empty target and the results go to ``out-2``, ``out-3``, ... With ``overwrite`` the
    old folder is renamed aside first and deleted only once the new one is in place.
    """
    if overwrite and out.exists():
        aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, aside)
        os.replace(staging, out)
        shutil.rmtree(aside) if aside.is_dir() else aside.unlink()
        return out
    for i in range(1, 1000):
        target = out if i == 1 else out.with_name(f"{out.name}-{i}")
        try:
            os.rename(staging, target)  # replaces only an empty folder
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise
            continue
        if target != out:
            warnings.warn(
                f"{out} already holds other results; this run's results are in {target}", stacklevel=2
            )
        return target
    raise RunError(f"no free output folder name next to {out}")


def write_folder(out: Path, write: Callable[[Path], None], overwrite: bool = False) -> Path:
    """Call ``write(folder)`` on a staging folder and publish it as ``out``; returns where it went.
    If ``write`` fails (or the process is interrupted) nothing appears under ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out)
    staging = staging_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        return publish(staging, out, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def keep_last_good(
    model, folder: Path, spec, err, history: list | None = None, meta: dict | None = None
) -> FilterpruneError:
    """Save the weights that training fell back to after a NaN/inf loss and return the error to raise,
    which says where they are: a diverged epoch never costs the epochs before it."""
    if (
        not distributed.is_main()
    ):  # --distributed: all ranks stopped at the same step; rank 0 keeps the weights
        return err
    ckpt.save(
        model.cpu(),
        folder / "model",
        spec,
        history,
        {**(meta or {}), "stopped": str(err), "epoch": err.good_epoch},
    )
    return err.saved(f"{folder}/")

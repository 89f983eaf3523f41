"""The layout holds: every module imports on its own in a fresh interpreter (no import-order cycles), and
no library module imports the command line."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import filterprune

ROOT = Path(filterprune.__file__).parent
MODULES = sorted(m.name for m in pkgutil.walk_packages([str(ROOT)], prefix="filterprune.")
                 if m.name != "filterprune.__main__")  # __main__ runs the CLI when imported


@pytest.mark.slow  # ~80 fresh interpreters, 2-5 min
def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = ("import importlib, subprocess, sys\n"
            "bad = []\n"
            f"for m in {MODULES!r}:\n"
            "    p = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    if p.returncode: bad.append((m, p.stderr.strip().splitlines()[-1:]))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900).stdout
    assert out.strip() == "[]", out


def test_no_library_module_imports_the_cli():
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*.py")
                 if p.name not in ("cli.py", "__main__.py") and ("from .cli" in p.read_text() or "from ..cli" in
                                                                 p.read_text() or "filterprune.cli" in p.read_text())]
    assert offenders == []


def test_library_messages_go_through_logging(caplog):
    import logging

    from filterprune.log import say

    with caplog.at_level(logging.INFO, logger="filterprune"):
        say("a path with a\nnewline")
    assert [r.getMessage() for r in caplog.records] == ["a path with a\\nnewline"]  # one line, escaped


BENCH = ROOT.parent / "benchmarks"


def test_no_benchmark_folder_shadows_a_package():
    """``python benchmarks/X.py`` puts benchmarks/ first on sys.path, so a result folder named like a package
    becomes that package (a namespace package): benchmarks/timm/ broke torch_pruning's ``import timm`` wherever
    timm itself was not installed. Folder names must not be a dependency's or an optional extra's."""
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {re.match(r"[A-Za-z0-9_.-]+", r).group().lower().replace("-", "_") for r in reqs}
    names |= {"torch", "torchvision", "torch_pruning", "onnx", "onnxruntime", "timm", "openvino", "ray"}
    assert sorted(d.name for d in BENCH.iterdir() if d.is_dir() and d.name.lower() in names) == []


def test_a_benchmark_script_runs_from_its_folder():
    p = subprocess.run([sys.executable, str(BENCH / "accuracy_table.py"), "--help"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT.parent)
    assert p.returncode == 0, p.stderr[-2000:]

"""The layout holds: no import cycle among the package's modules, few imports inside functions (each with
its reason), every module imports on its own in a fresh interpreter, and no library module imports the
command line."""

import ast
import io
import pkgutil
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

import filterprune

ROOT = Path(filterprune.__file__).parent
MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages([str(ROOT)], prefix="filterprune.")
    if m.name != "filterprune.__main__"
)  # __main__ runs the CLI when imported


MAX_FUNCTION_IMPORTS = 30  # imports of filterprune modules inside functions: fewer than this
MAX_FUNCTION_LINES = 60  # def line to last line, docstring included


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) of every module of the package."""
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (p, is_pkg)
    return mods


def _imports(mods: dict) -> list[tuple[str, int, bool, set[str]]]:
    """(module, line, at module level, filterprune modules it imports) for every import statement that
    imports a filterprune module. ``from a import b`` imports ``a.b`` when that is a module, else ``a``."""
    found = []
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".")[: len(mod.split(".")) - node.level + is_pkg]
                    base = ".".join(parts + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            targets = set()
            for name in names:
                while name not in mods and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name in mods and name.split(".")[0] == "filterprune" and name != mod:
                    targets.add(name)
            if targets:
                found.append((mod, node.lineno, id(node) in top, targets))
    return found


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in import order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(edges.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    """Module-level imports of filterprune modules form no cycle (a registry package imports its entries,
    which import the registry's own module, never the package back)."""
    edges: dict[str, set[str]] = {}
    for mod, _, top, targets in _imports(_modules()):
        if top:
            edges.setdefault(mod, set()).update(targets)
    cycle = _cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_few_imports_inside_functions_each_with_its_reason():
    """An import inside a function hides a dependency; one is kept only where a cheap path (``import
    filterprune``, the CLI's parsing, the torch-free config) must not pay for torch, onnx or pandas, or for
    an optional dependency, and its line says why in a comment."""
    mods = _modules()
    inner = [(mod, line) for mod, line, top, _ in _imports(mods) if not top]
    comments: dict[str, set[int]] = {}
    for mod, _ in inner:
        if mod not in comments:
            tokens = tokenize.generate_tokens(io.StringIO(mods[mod][0].read_text()).readline)
            comments[mod] = {t.start[0] for t in tokens if t.type == tokenize.COMMENT}
    assert len(inner) < MAX_FUNCTION_IMPORTS, f"{len(inner)} filterprune imports in functions: {inner}"
    silent = [
        f"{mods[mod][0].relative_to(ROOT.parent)}:{line}" for mod, line in inner if line not in comments[mod]
    ]
    assert silent == [], f"imports inside functions without a '# reason' on their line: {silent}"


def _long_functions(path: Path, limit: int, root: Path = ROOT.parent) -> list[str]:
    """``file:line name (N lines)`` for each function or method in ``path`` longer than ``limit``."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(root)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
        for n in ast.walk(tree)
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > limit
    ]


def test_no_function_over_60_lines():
    """A long function does several things: each step gets a helper whose name says what it does."""
    long = [f for p in sorted(ROOT.rglob("*.py")) for f in _long_functions(p, MAX_FUNCTION_LINES)]
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_length_check_finds_a_long_method_and_spares_one_at_the_limit(tmp_path):
    body = "        x = 1\n"
    (tmp_path / "m.py").write_text(
        "class A:\n    def long(self):\n"
        + body * MAX_FUNCTION_LINES
        + "    def fits(self):\n"
        + body * (MAX_FUNCTION_LINES - 1)
    )
    found = _long_functions(tmp_path / "m.py", MAX_FUNCTION_LINES, tmp_path)
    assert found == [f"m.py:2 long ({MAX_FUNCTION_LINES + 1} lines)"]


@pytest.mark.slow  # ~80 fresh interpreters, 2-5 min
def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = (
        "import importlib, subprocess, sys\n"
        "bad = []\n"
        f"for m in {MODULES!r}:\n"
        "    p = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
        "    if p.returncode: bad.append((m, p.stderr.strip().splitlines()[-1:]))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900).stdout
    assert out.strip() == "[]", out


def test_no_library_module_imports_the_cli():
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if p.name not in ("cli.py", "__main__.py")
        and (
            "from .cli" in p.read_text()
            or "from ..cli" in p.read_text()
            or "filterprune.cli" in p.read_text()
        )
    ]
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
    p = subprocess.run(
        [sys.executable, str(BENCH / "accuracy_table.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT.parent,
    )
    assert p.returncode == 0, p.stderr[-2000:]


def test_every_catalog_entry_imports_and_listing_imports_no_torch():
    """The catalog's ``module:attr`` references resolve (a renamed builder fails here, not in a user's run),
    and ``filterprune list`` answers without importing torch."""
    from filterprune.catalog import CRITERIA, DATASETS, MODELS

    for reg in (MODELS, DATASETS, CRITERIA):
        for name in reg.names():
            assert callable(reg.get(name.replace("<name>", ""))), name
    code = (
        "import sys\nfrom filterprune.cli import main\nmain(['list', 'criteria'])\n"
        "assert 'torch' not in sys.modules, 'listing imported torch'\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "synflow" in p.stdout

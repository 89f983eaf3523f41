"""The user's own model: ``path/to/file.py:factory`` or ``package.module:factory``.

The factory returns an ``nn.Module``; it is called with ``num_classes=N`` when it takes that argument
(or ``**kwargs``), plus the ``--model-args`` keyword arguments. Importing the file or module runs the
user's code, so it happens only for references the user handed over in this process (``trust``: the
command line, a sweep file, ``compress(model="my_net.py:build")``) or when the caller of
``filterprune.load`` says ``trust_code=True``. A saved run records the reference with the file's
absolute path and SHA-256; loading it elsewhere without trust is a one-line refusal, never an import.
Trust covers the code the run was made from, nothing else: ``admit`` lets a reference in only when its
code has the SHA-256 the run records (``serialization`` compares the run's records), and the bytes so
checked are the bytes executed. Files the factory itself imports are not hashed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import torch.nn as nn

from ..errors import UsageError
from ..guard import Terminated, ended
from ..limits import printable

_FILE_REF = re.compile(r"^(?P<path>.+\.py):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_MODULE_REF = re.compile(
    r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$"
)
_OBJECT_REF = re.compile(
    r"^object:[A-Za-z_][\w.<>]*$"
)  # a module handed over in Python: no recipe to rebuild it
_TRUSTED: set[str] = set()  # references handed over by the user in this process
_ADMITTED: dict[str, str] = {}  # references checked against a run's records -> the SHA-256 they must have
_TRUST_ALL = False  # --trust-code said for this whole process (export, bench of a run): runs are checked
_IMPORTED: dict[str, object] = {}  # absolute file path -> its module (imported once per process)
_DIGESTS: dict[str, str] = {}  # absolute file path -> SHA-256 of the bytes imported


def is_factory_ref(name: str) -> bool:
    if not isinstance(name, str) or name.startswith(
        ("tv:", "timm:", "yolo:", "npz:", "imagefolder:", "coco:")
    ):
        return False
    return bool(_FILE_REF.match(name) or _MODULE_REF.match(name) or _OBJECT_REF.match(name))


def object_ref(model: nn.Module) -> str:
    """How a run made from a module in hand names it: ``object:<module>.<class>`` (rebuilt only from the
    module the caller hands to ``load(DIR, model=...)``)."""
    cls = type(model)
    return f"object:{cls.__module__}.{cls.__qualname__}"


def portable(name: str) -> str:
    """The model's name as a deployed file may carry it: a factory file by its file name
    (``my_net.py:build``), never the user's local absolute path; other names as they are."""
    if not is_factory_ref(name):
        return name
    path, _, attr = name.rpartition(":")
    return f"{Path(path).name}:{attr}" if path.endswith(".py") else name


def canonical(name: str) -> str:
    """The reference as recorded: a file's path made absolute (so the run says exactly what it imported)."""
    m = _FILE_REF.match(name)
    if m:
        return f"{Path(m['path']).expanduser().resolve()}:{m['attr']}"
    return name


def trust(name: str) -> str:
    """Mark a reference the user handed over (allowed to import); returns its canonical form."""
    ref = canonical(name)
    _TRUSTED.add(ref)
    return ref


def trust_all() -> None:
    """The user said so (``--trust-code``): the factory of every run read in this process may be imported,
    once checked against that run's records (``serialization.read_meta``)."""
    global _TRUST_ALL
    _TRUST_ALL = True


def trusting_runs() -> bool:
    return _TRUST_ALL


def is_trusted(name: str) -> bool:
    """Handed over by the user in this process (not merely admitted from a run's records)."""
    return canonical(name) in _TRUSTED


def admit(name: str, sha256: str, source: str) -> str:
    """Allow importing ``name`` as exactly the code whose SHA-256 ``source`` records; a file that is not
    there or has other contents (another file, an edit since the run) is a one-line refusal."""
    ref = canonical(name)
    m = _FILE_REF.match(ref)
    where = m["path"] if m else ref
    now = code_digest(ref)
    if now is None:
        raise UsageError(
            f"the code of {ref} is not there ({where}), so it cannot be checked against {source}"
        )
    if now != sha256:
        raise UsageError(
            f"{where} does not hold the code {source} was made from (another file, or "
            f"changed since): its SHA-256 is {now[:16]}..., the run records {sha256[:16]}...; "
            "trust covers that code only"
        )
    _ADMITTED[ref] = sha256
    return ref


def grants(names) -> dict[str, str]:
    """Which of ``names`` a fresh process may import on this one's word (the memory probe), each with the
    SHA-256 of the code imported here: it is admitted there for exactly that code."""
    out = {}
    for name in names:
        ref = canonical(name)
        sha = _ADMITTED.get(ref) or (code_digest(ref) if ref in _TRUSTED else None)
        if sha:
            out[ref] = sha
    return out


def code_digest(name: str) -> str | None:
    """SHA-256 of the factory's source file (None when not found), of the bytes imported when this process
    imported it: part of the baseline cache key, so an edited model file is trained again, and recorded
    in the checkpoint and the report, which trust is checked against."""
    if _OBJECT_REF.match(name):
        return None
    m = _FILE_REF.match(canonical(name))
    path = Path(m["path"]) if m else None
    if path is not None and str(path) in _DIGESTS:
        return _DIGESTS[str(path)]
    if path is None:
        mod = _MODULE_REF.match(name)
        spec = importlib.util.find_spec(mod["module"].split(".")[0]) if mod else None
        path = Path(spec.origin) if spec and spec.origin else None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else None
    except OSError:  # not readable (a name too long, a loop of links): nothing to hash
        return None


def _refuse_untrusted(ref: str) -> UsageError:
    return UsageError(
        f"this model is built by user code ({ref}); loading it would import that code: pass "
        "trust_code=True (command line: --trust-code) if you trust it, or hand over the dense "
        "module with model=..."
    )


def resolve(name: str, trust_code: bool = False):
    """The factory callable of a reference. Imports the file or module: only for trusted references."""
    ref = canonical(name)
    if _OBJECT_REF.match(ref):
        raise UsageError(
            f"this model was handed over as a Python object ({ref[7:]}); nothing records how to "
            "build it: in Python, filterprune.load(DIR, model=<the dense module>) rebuilds it, then "
            "filterprune.export(model, PATH, example_inputs) exports it and filterprune.bench(...) times it"
        )
    if ref not in _TRUSTED and ref not in _ADMITTED:
        if trust_code or _TRUST_ALL:  # trust is for a run's own code: checked when its records are read
            raise UsageError(
                f"{ref} was not checked against the records of a run (trust covers the code a "
                "run was made from): load the run with filterprune.load(DIR, trust_code=True)"
            )
        raise _refuse_untrusted(ref)
    m = _FILE_REF.match(ref)
    if m:
        obj = _import_file(Path(m["path"]), name, None if ref in _TRUSTED else _ADMITTED[ref])
        where = m["path"]
    else:
        m = _MODULE_REF.match(ref)
        assert m is not None  # canonical references are file, module or object references
        where = m["module"]
        try:
            obj = importlib.import_module(m["module"])
        except ModuleNotFoundError as e:
            raise UsageError(
                f"model module {m['module']!r} not found ({e}); is it installed or on PYTHONPATH?"
            ) from None
        except (KeyboardInterrupt, Terminated):
            raise
        except BaseException as e:  # noqa: BLE001 - user code: a sys.exit or BaseException is its failure too
            raise UsageError(f"importing model module {m['module']!r} failed: {_first_line(e)}") from None
    for part in m["attr"].split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{where} has no attribute {m['attr']!r} (the factory of --model {name})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(
            f"{where}:{m['attr']} is not callable (it is a {type(obj).__name__}); --model needs a "
            "function or class that returns an nn.Module"
        )
    return obj


def _import_file(path: Path, name: str, sha256: str | None = None):
    """Import the file once per process; with ``sha256``, only bytes of that digest are executed (read
    once, checked, then run: no window for the file to change in between)."""
    try:
        found = path.is_file()
    except OSError as e:  # a name too long for the file system, a loop of links: no such model file either
        raise UsageError(
            f"model file {printable(str(path), 200)}: {e.strerror or type(e).__name__} (from --model "
            f"{printable(name, 200)})"
        ) from None
    if not found:
        raise UsageError(f"model file not found: {path} (from --model {name})")
    key = str(path)
    if key in _IMPORTED:
        if sha256 is not None and _DIGESTS[key] != sha256:
            raise UsageError(f"{path} was imported here with another SHA-256 than its run records")
        return _IMPORTED[key]
    try:
        source = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {_first_line(e)}") from None
    digest = hashlib.sha256(source).hexdigest()
    if sha256 is not None and digest != sha256:
        raise UsageError(
            f"{path} changed while being checked (SHA-256 {digest[:16]}..., recorded {sha256[:16]}...)"
        )
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"filterprune_user_{hashlib.sha256(key.encode()).hexdigest()[:12]}_{stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling-free introspection expect it there
    sys.path.insert(0, str(path.parent))  # the file may import its neighbours
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)  # the bytes checked above, nothing re-read
    except (KeyboardInterrupt, Terminated):
        sys.modules.pop(mod_name, None)
        raise
    except BaseException as e:  # noqa: BLE001 - user code: a sys.exit or BaseException is its failure too
        sys.modules.pop(mod_name, None)
        raise UsageError(f"importing {path} failed: {_first_line(e)}") from None
    finally:
        sys.path.remove(str(path.parent))
    _IMPORTED[key] = module
    _DIGESTS[key] = digest
    return module


def takes_num_classes(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "num_classes" or p.kind is p.VAR_KEYWORD for p in params)


def build_factory(spec, trust_code: bool = False) -> nn.Module:
    fn = resolve(spec.name, trust_code)
    kwargs = dict(spec.args)
    if takes_num_classes(fn):
        kwargs.setdefault("num_classes", spec.num_classes)
    try:
        model = fn(**kwargs)
    except (KeyboardInterrupt, Terminated):
        raise
    except BaseException as e:  # noqa: BLE001 - user code: a sys.exit or BaseException ends the build too
        raise UsageError(f"model factory {spec.name} {ended(e)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"model factory {spec.name} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _first_line(e: BaseException) -> str:
    return ended(e).removeprefix("raised ")

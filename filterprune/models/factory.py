"""The user's own model: ``path/to/file.py:factory`` or ``package.module:factory``.

The factory returns an ``nn.Module``; it is called with ``num_classes=N`` when it takes that argument
(or ``**kwargs``), plus the ``--model-args`` keyword arguments. Importing the file or module runs the
user's code, so it happens only for references the user handed over in this process (``trust``: the
command line, a sweep file, ``compress(model="my_net.py:build")``) or when the caller of
``filterprune.load`` says ``trust_code=True``. A saved run records the reference with the file's
absolute path; loading it elsewhere without trust is a one-line refusal, never an import.
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

_FILE_REF = re.compile(r"^(?P<path>.+\.py):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_MODULE_REF = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_OBJECT_REF = re.compile(r"^object:[A-Za-z_][\w.<>]*$")  # a module handed over in Python: no recipe to rebuild it
_TRUSTED: set[str] = set()  # references handed over by the user in this process
_TRUST_ALL = False  # --trust-code / trust_code=True said for this whole process (export, bench of a run)
_IMPORTED: dict[str, object] = {}  # absolute file path -> its module (imported once per process)


def is_factory_ref(name: str) -> bool:
    if not isinstance(name, str) or name.startswith(("tv:", "timm:", "npz:", "imagefolder:")):
        return False
    return bool(_FILE_REF.match(name) or _MODULE_REF.match(name) or _OBJECT_REF.match(name))


def object_ref(model: nn.Module) -> str:
    """How a run made from a module in hand names it: ``object:<module>.<class>`` (rebuilt only from the
    module the caller hands to ``load(DIR, model=...)``)."""
    cls = type(model)
    return f"object:{cls.__module__}.{cls.__qualname__}"


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
    """The user said so (``--trust-code``): every factory reference may be imported in this process."""
    global _TRUST_ALL
    _TRUST_ALL = True


def trusted() -> set[str]:
    return set(_TRUSTED)


def is_trusted(name: str) -> bool:
    return canonical(name) in _TRUSTED


def code_digest(name: str) -> str | None:
    """SHA-256 of the factory's source file (None when not found): part of the baseline cache key, so an
    edited model file is trained again, and recorded in the report."""
    m = _FILE_REF.match(name)
    path = Path(m["path"]) if m else None
    if _OBJECT_REF.match(name):
        return None
    if path is None:
        spec = importlib.util.find_spec(_MODULE_REF.match(name)["module"].split(".")[0]) if _MODULE_REF.match(name) else None
        path = Path(spec.origin) if spec and spec.origin else None
    if path is None or not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refuse_untrusted(ref: str) -> UsageError:
    return UsageError(f"this model is built by user code ({ref}); loading it would import that code: pass "
                      "trust_code=True (command line: --trust-code) if you trust it, or hand over the dense "
                      "module with model=...")


def resolve(name: str, trust_code: bool = False):
    """The factory callable of a reference. Imports the file or module: only for trusted references."""
    ref = canonical(name)
    if _OBJECT_REF.match(ref):
        raise UsageError(f"this model was handed over as a Python object ({ref[7:]}); nothing records how to "
                         "build it: pass the dense module, filterprune.load(DIR, model=...)")
    if not (trust_code or _TRUST_ALL or ref in _TRUSTED):
        raise _refuse_untrusted(ref)
    m = _FILE_REF.match(ref)
    if m:
        obj = _import_file(Path(m["path"]), name)
        where = m["path"]
    else:
        m = _MODULE_REF.match(ref)
        where = m["module"]
        try:
            obj = importlib.import_module(m["module"])
        except ModuleNotFoundError as e:
            raise UsageError(f"model module {m['module']!r} not found ({e}); is it installed or on PYTHONPATH?") from None
        except Exception as e:
            raise UsageError(f"importing model module {m['module']!r} failed: {_first_line(e)}") from None
    for part in m["attr"].split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{where} has no attribute {m['attr']!r} (the factory of --model {name})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{where}:{m['attr']} is not callable (it is a {type(obj).__name__}); --model needs a "
                         "function or class that returns an nn.Module")
    return obj


def _import_file(path: Path, name: str):
    if not path.is_file():
        raise UsageError(f"model file not found: {path} (from --model {name})")
    key = str(path)
    if key in _IMPORTED:
        return _IMPORTED[key]
    stem = re.sub(r"\W", "_", path.stem)
    mod_name = f"filterprune_user_{hashlib.sha256(key.encode()).hexdigest()[:12]}_{stem}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling-free introspection expect it there
    sys.path.insert(0, str(path.parent))  # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise UsageError(f"importing {path} failed: {_first_line(e)}") from None
    finally:
        sys.path.remove(str(path.parent))
    _IMPORTED[key] = module
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
    except Exception as e:
        raise UsageError(f"model factory {spec.name} raised {_first_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"model factory {spec.name} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _first_line(e: BaseException) -> str:
    text = str(e).splitlines()[0][:200] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__

"""A sweep file (YAML) -> the list of runs it stands for, each a validated ``CompressConfig`` with a
stable id.

    name: lajic                  # optional; default: the file's stem
    base: {model: vgg16, ...}    # CompressConfig fields shared by every run
    grid:                        # axes; the runs are their product (last axis varies fastest)
      criterion: [greedy, l1]    # a field axis: a list of values for one field
      task:                      # a linked axis (any other name): each entry sets several fields together
        - {dataset: cifar10, finetune_epochs: 10}
        - {dataset: cifar100, finetune_epochs: 20}
    include:                     # extra single runs, each a mapping of fields over base
                                 # (not crossed with grid)
      - {criterion: imp, imp_iterations: 4}
    resources: {num_cpus: 1, num_gpus: 0.5}   # per run, for --executor ray (not part of the sweep's identity)

Every error names the file and the key (``base.lr``, ``grid.task[1].dataset``, ``include[0]``) and is a
``UsageError``: a typo must stop the sweep before anything runs, not after an hour of it.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import limits, safeload
from ..config import CompressConfig, check_value, key_hints
from ..errors import FilterpruneError, UsageError

TOP_KEYS = ("name", "base", "grid", "include", "resources")
NOT_HASHED = ("out", "overwrite", "distributed")  # where and how a run is launched is not what it is
SET_BY_SWEEP = {
    "out": "each run goes to DIR/runs/<run_id>",
    "overwrite": "each run goes to DIR/runs/<run_id>",
    "distributed": "each run is one process; --executor ray spreads runs over machines",
}
RESOURCE_KEYS = ("num_cpus", "num_gpus")


@dataclass(frozen=True)
class Run:
    run_id: str
    config: dict  # the resolved CompressConfig fields, minus NOT_HASHED
    label: str  # the values this run's axes chose, for people


@dataclass(frozen=True)
class Sweep:
    name: str
    file: str
    spec: dict  # base / grid / include as validated (values coerced to their field types)
    runs: tuple[Run, ...]
    resources: dict

    @property
    def sweep_id(self) -> str:
        return digest({"name": self.name, "runs": sorted(r.run_id for r in self.runs)})

    def resolved(self) -> dict:
        """What ``sweep.json`` records under ``config``."""
        return {
            "name": self.name,
            **self.spec,
            "resources": self.resources,
            "runs": [{"run_id": r.run_id, "label": r.label, "config": r.config} for r in self.runs],
        }


def digest(obj) -> str:
    """A short, stable hash of JSON-able data (key order and int/float spelling of floats do not matter
    once values are coerced to their field types)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def run_id(config: dict) -> str:
    """The id of a run: a hash of its resolved config without ``out``/``overwrite``, so a reader can
    recompute it from ``report.json["config"]``."""
    return digest({k: v for k, v in config.items() if k not in NOT_HASHED})


# ---------------------------------------------------------------------------------------- loading
def load_sweep(path: str | Path, overrides: dict | None = None) -> Sweep:
    """Read, validate and expand a sweep file; ``overrides`` (``--set key=value``) replace ``base`` keys."""
    path = Path(path)
    where = str(path)
    doc = _read(path)
    fields = _fields()
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise UsageError(f"{where}: name: expected a plain name (no '/'), got {_show(name)}")
    base = _fields_mapping(doc.get("base") or {}, "base", where, fields)
    axes = _axes(doc.get("grid") or {}, where, fields)
    base = {**base, **_overrides(overrides or {}, axes, where, fields)}
    include = doc.get("include") or []
    if not isinstance(include, list):
        raise UsageError(f"{where}: include: expected a list of mappings (one run each)")
    include = [_fields_mapping(e, f"include[{i}]", where, fields) for i, e in enumerate(include)]
    resources = _resources(doc.get("resources") or {}, where)
    _check_count([len(values) for _, _, values in axes], len(include), where)
    runs = _runs(_planned(base, axes, include), where)
    spec = {
        "base": base,
        "grid": {axis: [v if kind == "field" else a for v, a in values] for axis, kind, values in axes},
        "include": include,
    }
    return Sweep(name, str(path), _jsonable(spec), runs, resources)


def _read(path: Path) -> dict:
    """The sweep file as a mapping with known top-level keys; every way it can fail is one UsageError."""
    where = str(path)
    if not path.is_file():
        raise UsageError(f"sweep config not found: {path}")
    try:
        if path.stat().st_size > safeload.MAX_YAML_BYTES:
            raise ValueError(f"larger than {safeload.MAX_YAML_BYTES:,} bytes")
        doc = safeload.load_yaml(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{where}: cannot read: {limits.show(str(e), 200)}") from None
    except ValueError as e:  # an alias bomb, a huge file: refused before it is built
        raise UsageError(f"{where}: refused: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    for key in doc:
        if key not in TOP_KEYS:
            raise UsageError(
                f"{where}: unknown key {_show(key)}{_did_you_mean(key, TOP_KEYS)}; valid: "
                f"{', '.join(TOP_KEYS)}"
            )
    return doc


def _planned(base: dict, axes: list, include: list[dict]) -> list[tuple[str, dict]]:
    """(label, fields over base) per run: the grid's product (last axis fastest), then each include;
    no grid and no include: base alone is the one run."""
    planned = []
    for combo in (
        itertools.product(*[[a for _, a in values] for _, _, values in axes]) if axes or not include else ()
    ):
        assign = {k: v for a in combo for k, v in a.items()}
        planned.append((_label(assign) or "base", {**base, **assign}))
    for i, extra in enumerate(include):
        planned.append((f"include[{i}]: {_label(extra)}", {**base, **extra}))
    return planned


def _runs(planned: list[tuple[str, dict]], where: str) -> tuple[Run, ...]:
    """Each planned run resolved and given its id; a combination listed twice is one run."""
    runs, seen = [], set()
    for label, values in planned:
        config = _resolve(values, f"{where}: run {label}")
        rid = run_id(config)
        if rid not in seen:
            seen.add(rid)
            runs.append(Run(rid, config, label))
    return tuple(runs)


def parse_set(items: list[str]) -> dict:
    """``--set key=value`` (repeatable): the value read as YAML, so ``0.3``, ``true``, ``[1, 32]`` and
    ``null`` mean what they mean in the sweep file."""
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {_show(item)}")
        try:
            out[key.strip()] = safeload.load_yaml(text) if text.strip() else None
        except (ValueError, yaml.YAMLError):
            raise UsageError(f"--set {_show(key)}: not a YAML value: {_show(text)}") from None
    return out


def _overrides(values: dict, axes, where: str, fields: dict) -> dict:
    """``--set`` keys over ``base``; a key that is a grid axis varies by design and is refused."""
    varied = {k for _, _, entries in axes for _, assign in entries for k in assign}
    for key in values:
        if key in varied:
            raise UsageError(
                f"--set {_show(key)}: {where} varies it along a grid axis; --set replaces base keys"
            )
    return _fields_mapping(values, "--set", where, fields)


def _check_count(axis_lengths: list[int], includes: int, where: str) -> None:
    """Refuse a sweep of more than ``limits.MAX_GRID_RUNS`` runs from the axis lengths alone, before the
    product is built (a few lines of YAML can stand for millions of runs)."""
    grid = math.prod(axis_lengths) if axis_lengths or not includes else 0
    total = grid + includes
    if total > limits.MAX_GRID_RUNS:
        sizes = " x ".join(str(n) for n in axis_lengths) or "1"
        raise UsageError(
            f"{where}: the sweep stands for {total:,} runs (grid {sizes}"
            f"{f' + {includes} include' if includes else ''}); at most {limits.MAX_GRID_RUNS:,} "
            "runs per sweep file (split it)"
        )


def _fields() -> dict[str, object]:
    return {k: h for k, h in key_hints().items() if k not in SET_BY_SWEEP}


def _axes(grid, where: str, fields: dict) -> list[tuple[str, str, list[tuple[object, dict]]]]:
    """grid -> [(axis, "field"|"linked", [(value, {field: value})...])]; a field belongs to one axis only."""
    if not isinstance(grid, dict):
        raise UsageError(f"{where}: grid: expected a mapping of axis -> list of values")
    axes: list[tuple[str, str, list[tuple[object, dict]]]] = []
    owner: dict[str, str] = {}
    for axis, values in grid.items():
        at = f"grid.{axis}"
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where}: {at}: expected a non-empty list of values")
        mappings = all(isinstance(v, dict) for v in values)
        takes_mapping = axis in fields and "dict" in str(fields[axis])  # model_args: its values are mappings
        linked = mappings and not takes_mapping  # a linked axis, even one named like a field ("task")
        if axis in fields and not linked:
            entries = []
            for i, v in enumerate(values):
                value = _coerce(v, fields[axis], f"{where}: {at}[{i}]")
                _check_alone(axis, value, f"{where}: {at}[{i}]")
                entries.append((value, {axis: value}))
            kind = "field"
        elif linked:  # each entry sets several fields (sweep files name such axes freely, "task" included)
            entries = [(v, _fields_mapping(v, f"{at}[{i}]", where, fields)) for i, v in enumerate(values)]
            kind = "linked"
        else:
            if axis in SET_BY_SWEEP:
                raise UsageError(f"{where}: {at}: {_show(axis)} is set by the sweep ({SET_BY_SWEEP[axis]})")
            raise UsageError(
                f"{where}: {at}: unknown key {_show(axis)}{_did_you_mean(axis, fields)} (a field of "
                "`filterprune compress`, or a linked axis whose entries are mappings of fields)"
            )
        for key in {k for _, a in entries for k in a}:
            if key in owner:
                raise UsageError(
                    f"{where}: {at}: {_show(key)} is already an axis value in grid.{owner[key]}; "
                    "a field can vary along one axis only (use a linked axis to tie fields)"
                )
            owner[key] = axis
        axes.append((axis, kind, entries))
    return axes


def _fields_mapping(m, at: str, where: str, fields: dict) -> dict:
    if not isinstance(m, dict):
        raise UsageError(f"{where}: {at}: expected a mapping of field -> value, got {_show(m)}")
    out = {}
    for key, value in m.items():
        if key in SET_BY_SWEEP:
            raise UsageError(f"{where}: {at}.{key}: {_show(key)} is set by the sweep ({SET_BY_SWEEP[key]})")
        if key not in fields:
            raise UsageError(
                f"{where}: {at}: unknown key {_show(key)}{_did_you_mean(str(key), fields)} "
                "(see `filterprune compress -h`; flags are spelled with '_' here)"
            )
        out[key] = _coerce(value, fields[key], f"{where}: {at}.{key}")
        _check_alone(key, out[key], f"{where}: {at}.{key}")
    return out


def _resources(m, where: str) -> dict:
    if not isinstance(m, dict):
        raise UsageError(f"{where}: resources: expected a mapping with {', '.join(RESOURCE_KEYS)}")
    out = {}
    for key, value in m.items():
        if key not in RESOURCE_KEYS:
            raise UsageError(
                f"{where}: resources: unknown key {_show(key)}; valid: {', '.join(RESOURCE_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UsageError(f"{where}: resources.{key}: expected a number >= 0, got {_show(value)}")
        out[key] = value
    return out


# ----------------------------------------------------------------------------------------- values
def _coerce(value, hint, at: str):
    """A YAML value as the field's type; ints are accepted for floats (and '1e-3', which YAML 1.1 reads as
    a string), so that equal settings hash equally."""
    if _fits(value, hint):
        return _cast(value, hint)
    raise UsageError(f"{at}: expected {_type_name(hint)}, got {_show(value)}")


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return _as_float(value) is not None
    if hint is str:
        return isinstance(value, str)
    if hint is dict:  # model_args: keyword arguments, JSON-safe
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return isinstance(value, list) and (bool(value) or item is str) and all(_fits(v, item) for v in value)
    return False


def _cast(value, hint):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        # the first member that takes the value as it is (an int stays an int in `int | str`), else a float
        args = typing.get_args(hint)
        exact = [h for h in args if h is not float and _fits(value, h)]
        return _cast(value, exact[0] if exact else float)
    if hint is float:
        return _as_float(value)
    if origin is tuple:
        (item, *_) = typing.get_args(hint)
        return [_cast(v, item) for v in value]  # lists in JSON, tuples in CompressConfig
    return value


def _as_float(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(h) for h in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(hint)[0])}s"
    return {
        type(None): "null",
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a mapping",
    }.get(hint, str(hint))


def _check_alone(key: str, value, at: str) -> None:
    """Check one value on its own (an unknown criterion, a sparsity out of range), so the error names the
    key it came from; checks that need other keys happen per run in ``_resolve``."""
    try:
        check_value(key, _tuple(value))
    except FilterpruneError as e:
        raise UsageError(f"{at}: {e}") from None


def _resolve(values: dict, at: str) -> dict:
    try:
        cfg = CompressConfig.of(**{k: _tuple(v) for k, v in values.items()})
        cfg.validate()
    except FilterpruneError as e:
        raise UsageError(f"{at}: {e}") from None
    return _jsonable({k: v for k, v in cfg.flat().items() if k not in NOT_HASHED})


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def _show(value) -> str:
    return limits.show(value)


def _did_you_mean(key: str, valid) -> str:
    close = difflib.get_close_matches(str(key)[:100], list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _label(assign: dict) -> str:
    return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in assign.items())

"""Options defined once, as fields of small dataclasses (option groups), and everything generated from them.

``option(default, help, ...)`` is a ``dataclasses.field`` whose metadata says how the option parses, how
its single value is checked, and its *key*: the one name it has as a flag (``--key-with-dashes``), as a
sweep-file key and as a Python keyword (default: the field's name). ``add_flags`` turns a group into an
argparse group; ``from_flat`` builds a group from keys. Importing this module is cheap (no torch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterable

from .errors import UsageError

_NO_DEFAULT = dataclasses.MISSING


def option(
    default=_NO_DEFAULT,
    help: str = "",
    *,
    key: str | None = None,
    parse=None,
    check=None,
    choices=None,
    metavar=None,
    negate: str | None = None,
    positional: bool = False,
    per_criterion: bool = False,
):
    """A group field with its outside form: ``help`` (required), ``key`` (its flag / sweep / keyword name),
    ``parse`` (text -> value; default: the field's type), ``check`` (value -> None, raising ``UsageError``;
    ``choices`` are checked too), ``metavar``, ``negate`` (the flag of a boolean that defaults to True),
    ``positional`` (a field without a default given first on the command line), ``per_criterion`` (read only
    by the criteria that list its key in their ``reads``)."""
    meta = {
        "help": help,
        "key": key,
        "parse": parse,
        "check": check,
        "choices": choices,
        "metavar": metavar,
        "negate": negate,
        "positional": positional,
        "per_criterion": per_criterion,
    }
    return (
        dataclasses.field(metadata=meta)
        if default is _NO_DEFAULT
        else dataclasses.field(default=default, metadata=meta)
    )


def key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("key") or f.name


def options(cls) -> list[dataclasses.Field]:
    """The option fields of a group, in order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def hints(cls) -> dict[str, object]:
    """key -> the field's type (what a sweep value must fit)."""
    types_ = typing.get_type_hints(cls)
    return {key_of(f): types_[f.name] for f in options(cls)}


def check_value(f: dataclasses.Field, value) -> None:
    """One field's own checks on one value (a range, a choice, a registry name)."""
    md = f.metadata
    if value is None:  # an optional option left unset: its own default applies
        return
    if md.get("choices") and value not in md["choices"]:
        raise UsageError(
            f"unknown {key_of(f)} {value!r}; valid: {', '.join(map(str, md['choices']))}", (key_of(f),)
        )
    if md.get("check"):
        md["check"](key_of(f), value)


def check_fields(group) -> None:
    for f in options(type(group)):
        check_value(f, getattr(group, f.name))


def from_flat(cls, values: dict, *, strict: bool = True):
    """A group from keys (unknown keys refused with ``strict``); fields without a key keep their default."""
    by_key = {key_of(f): f.name for f in options(cls)}
    if strict:
        unknown = set(values) - set(by_key)
        if unknown:
            raise UsageError(f"unknown option {sorted(unknown)[0]!r}")
    return cls(**{by_key[k]: v for k, v in values.items() if k in by_key})


def to_flat(group) -> dict:
    return {key_of(f): getattr(group, f.name) for f in options(type(group))}


# --------------------------------------------------------------------------------- single-value checks
def in_range(
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
) -> Callable[[str, object], None]:
    """A check that the value lies in [lo, hi] (``lo_open``/``hi_open``: the end excluded)."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    text = f">= {lo}" if hi is None else f"in {left}{lo}, {hi}{right}" if lo is not None else f"<= {hi}"
    if lo_open and hi is None:
        text = f"> {lo}"

    def check(key: str, v) -> None:
        num = isinstance(v, (int, float)) and not isinstance(v, bool) and (not integer or isinstance(v, int))
        ok = (
            num
            and math.isfinite(v)
            and (lo is None or (v > lo if lo_open else v >= lo))
            and (hi is None or (v < hi if hi_open else v <= hi))
        )
        if not ok:
            raise UsageError(f"{key} must be {text}, got {v!r}", (key,))

    return check


def all_at_least(lo: int) -> Callable[[str, object], None]:
    def check(key: str, values) -> None:
        if not values or any(v < lo for v in values):
            raise UsageError(f"{key} must be integers >= {lo}, got {list(values)}", (key,))

    return check


# ------------------------------------------------------------------------------------------- parsing
def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def round_to(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def json_object(text: str | dict | None) -> dict:
    """``model_args``: a JSON object of keyword arguments for the model's builder."""
    if text is None or isinstance(text, dict):
        return dict(text or {})
    try:
        args = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UsageError(
            f"model_args must be a JSON object such as '{{\"width\": 32}}' ({e})", ("model_args",)
        ) from None
    if not isinstance(args, dict):
        raise UsageError(f"model_args must be a JSON object, got {type(args).__name__}", ("model_args",))
    return args


def json_arg(text: str) -> dict:
    """``--model-args`` on the command line: argparse names the flag, the message says what is wrong."""
    try:
        return json_object(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("model_args ")) from None


def batch_or_dynamic(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or an integer, got {text!r}") from None


def _parser_for(hint) -> Callable[[str], object]:
    """The argparse type of a plain field type: int, float or str, optional (``X | None``) or not."""
    args = (
        [a for a in typing.get_args(hint) if a is not type(None)]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else [hint]
    )
    if len(args) == 1 and args[0] in (int, float, str):
        return args[0]
    raise TypeError(f"no command-line parser for {hint!r}: give option(parse=...)")


# --------------------------------------------------------------------------------------------- flags
def flag_of(f: dataclasses.Field, keyed: bool = True) -> str:
    name = key_of(f) if keyed else f.name
    if f.metadata.get("positional"):
        return name
    if f.metadata.get("negate") or f.default is True:
        return f.metadata.get("negate") or f"--no-{name.replace('_', '-')}"
    return f"--{name.replace('_', '-')}"


def _help(f: dataclasses.Field) -> str:
    """The help with the default shown, unless the text already says what happens without the flag."""
    text = f.metadata["help"]
    if f.default is _NO_DEFAULT or isinstance(f.default, bool) or "default" in text:
        return text
    shown = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
    return f"{text} (default: {shown})" if shown not in (None, "") else text


def add_flags(
    parser: argparse.ArgumentParser,
    cls,
    *,
    title: str | None = None,
    keyed: bool = True,
    only: Iterable[str] | None = None,
) -> None:
    """One flag per option of group ``cls`` (or of the keys in ``only``), in field order, in an argparse
    group titled ``title``. ``keyed=False``: flags named by the field instead of the key (``filterprune
    bench --iters`` for the key ``bench_iters`` that ``compress`` spells ``--bench-iters``)."""
    wanted = set(only) if only is not None else None
    fields = [f for f in options(cls) if wanted is None or key_of(f) in wanted]
    target = parser.add_argument_group(title) if title else parser
    types_ = typing.get_type_hints(cls)
    for f in fields:
        md, dest = f.metadata, key_of(f)
        if md["positional"]:
            target.add_argument(dest, help=md["help"])
            continue
        if types_[f.name] is bool:
            target.add_argument(
                flag_of(f, keyed),
                dest=dest,
                action="store_false" if f.default else "store_true",
                help=md["help"],
            )
            continue
        kw: dict[str, typing.Any] = {
            "dest": dest,
            "help": _help(f),
            "type": md["parse"] or _parser_for(types_[f.name]),
        }
        if md["choices"]:
            kw["choices"] = md["choices"]
        if md["metavar"]:
            kw["metavar"] = md["metavar"]
        if f.default is _NO_DEFAULT:
            kw["required"] = True
        else:
            kw["default"] = f.default
        target.add_argument(flag_of(f, keyed), **kw)


def values(cls, namespace: argparse.Namespace) -> dict:
    """The keys of group ``cls`` that ``namespace`` holds."""
    return {key_of(f): getattr(namespace, key_of(f)) for f in options(cls) if hasattr(namespace, key_of(f))}


def flag_words(message: str, params: Iterable[str], flags: dict[str, str]) -> str:
    """A library message in command-line words: each option it is about (``params``, by key) becomes the
    flag that spells it in this command (``flags``: key -> flag)."""
    for key in sorted(params, key=len, reverse=True):
        if key in flags:
            message = re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", flags[key], message)
    return message

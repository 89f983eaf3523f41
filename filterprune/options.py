"""Options defined once, as dataclass fields, and the command-line flags generated from them.

``option(default, help, ...)`` is a ``dataclasses.field`` whose metadata says how the flag parses and
where it is listed; ``add_flags`` turns a dataclass's fields into argparse flags (``--field-name``, a
``--no-X`` switch for options on by default, the field's type as the parser), and ``values`` reads the
parsed namespace back into the dataclass's keyword arguments. The sweep files take the same fields.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing

_NO_DEFAULT = dataclasses.MISSING


def option(default=_NO_DEFAULT, help: str = "", *, parse=None, choices=None, metavar=None, group=None,
           negate: str | None = None, positional: bool = False, required: bool = False):
    """A dataclass field with its command-line form: ``help`` (required), ``parse`` (text -> value; default:
    the field's type), ``choices``, ``metavar``, argparse ``group``, ``negate`` (the flag of a boolean that
    defaults to True), ``positional``/``required`` (fields without a default)."""
    meta = {"help": help, "parse": parse, "choices": choices, "metavar": metavar, "group": group, "negate": negate,
            "positional": positional, "required": required}
    return dataclasses.field(metadata=meta) if default is _NO_DEFAULT else dataclasses.field(default=default,
                                                                                             metadata=meta)


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


def json_object(text: str) -> dict:
    """``--model-args``: a JSON object of keyword arguments (checked by ``sources.parse_model_args``)."""
    from .sources import parse_model_args

    return parse_model_args(text)


def round_to(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _parser_for(hint) -> typing.Callable[[str], object]:
    """The argparse type of a plain field type: int, float or str, optional (``X | None``) or not."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(
        hint, types.UnionType) or typing.get_origin(hint) is typing.Union else [hint]
    if len(args) == 1 and args[0] in (int, float, str):
        return args[0]
    raise TypeError(f"no command-line parser for {hint!r}: give option(parse=...)")


def flag_of(field: dataclasses.Field) -> str:
    if field.metadata.get("positional"):
        return field.name
    if field.metadata.get("negate") or (field.default is True):
        return field.metadata.get("negate") or f"--no-{field.name.replace('_', '-')}"
    return f"--{field.name.replace('_', '-')}"


def add_flags(parser: argparse.ArgumentParser, cls, only: typing.Iterable[str] | None = None) -> None:
    """One flag per field of ``cls`` (or of the fields named in ``only``), in field order."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    wanted = set(only) if only is not None else None
    for f in dataclasses.fields(cls):
        md = f.metadata
        if "help" not in md or (wanted is not None and f.name not in wanted):
            continue
        target = groups.setdefault(md["group"], parser.add_argument_group(md["group"])) if md["group"] else parser
        if md["positional"]:
            target.add_argument(f.name, help=md["help"])
            continue
        if hints[f.name] is bool:
            target.add_argument(flag_of(f), dest=f.name, action="store_false" if f.default else "store_true",
                                help=md["help"])
            continue
        kw = {"dest": f.name, "help": md["help"], "type": md["parse"] or _parser_for(hints[f.name])}
        if md["choices"]:
            kw["choices"] = md["choices"]
        if md["metavar"]:
            kw["metavar"] = md["metavar"]
        if f.default is _NO_DEFAULT:
            kw["required"] = True
        else:
            kw["default"] = f.default
        target.add_argument(flag_of(f), **kw)


def values(cls, namespace: argparse.Namespace) -> dict:
    """The keyword arguments of ``cls`` that ``namespace`` holds."""
    return {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}

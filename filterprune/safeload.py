"""Bounded readers for the YAML and JSON files people hand filterprune (sweep files, report.json,
checkpoint descriptions, latency tables).

A few hundred bytes of YAML can stand for billions of nodes (anchors and aliases, the "billion laughs"),
and a JSON file can hold a 50 MB string, 200,000 list entries, an integer with 400 digits or lists
nested 5,000 deep. Each of those is refused here, before it is built or handed on, with a ``ValueError``
saying which bound it broke; callers turn that into their one-line error naming the file.
``check_writable`` applies the same bounds to what filterprune is about to write (``model_args``), so
nothing is written that these readers would refuse.
"""

from __future__ import annotations

import json

import yaml

MAX_YAML_BYTES = 1 << 20  # sweep files are a few KB
MAX_YAML_ALIASES = 100  # references to an anchor (*name) in one file
MAX_YAML_NODES = 100_000  # nodes once every alias is expanded
MAX_DEPTH = 100  # lists/mappings nested in one another (ours are a few levels deep; Python's parsers recurse)
MAX_JSON_DIGITS = 30  # an integer longer than this is no count or size filterprune writes
MAX_JSON_STRING = 100_000  # characters in one string (paths, class names, messages)
MAX_JSON_ITEMS = 100_000  # entries in one list or object
MAX_JSON_NODES = 2_000_000  # values in the whole document
MAX_ARGS_BYTES = 64 << 10  # model_args (--model-args) are a few keyword arguments, never a payload


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts aliases while it composes the node graph (aliases share their
    node there, so composing a bomb is cheap; building Python objects from it is not)."""

    aliases = depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise ValueError(f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out")
        self.depth += 1  # the composer recurses once per level: bounded long before Python's stack is
        try:
            if self.depth > MAX_DEPTH:
                raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _expanded_size(root) -> int:
    """Nodes in the document with every alias expanded, without expanding it (shared nodes are counted
    once per reference from a memo); a recursive alias is refused."""
    size: dict[int, int] = {}
    path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
            if size[key] > MAX_YAML_NODES:
                raise ValueError(f"expands to more than {MAX_YAML_NODES:,} values (aliases of aliases?)")
            continue
        if key in size:
            continue
        if key in path:
            raise ValueError("a recursive alias (an anchor used inside itself)")
        path.add(key)
        stack.append((node, True))
        stack += [(c, False) for c in _children(node) if id(c) not in size]
    return size[id(root)]


def load_yaml(text: str):
    """``yaml.safe_load`` of one document, with the aliases and the expanded size bounded first.
    Raises ``yaml.YAMLError`` for bad syntax and ``ValueError`` for a document over the bounds."""
    if len(text) > MAX_YAML_BYTES:
        raise ValueError(f"larger than {MAX_YAML_BYTES:,} bytes")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _bounded_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_JSON_DIGITS:
        raise ValueError(f"an integer with {n} digits")
    return int(digits)


def check_tree(obj) -> None:
    """Refuse a JSON value with an over-long string, list or object, an integer of more than
    ``MAX_JSON_DIGITS`` digits, nesting deeper than ``MAX_DEPTH``, or too many values (iteratively: a
    value nested 100,000 deep is refused, not recursed into)."""
    stack, nodes = [(obj, 0)], 0
    while stack:
        x, depth = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise ValueError(f"more than {MAX_JSON_NODES:,} values")
        if isinstance(x, str):
            if len(x) > MAX_JSON_STRING:
                raise ValueError(f"a string of {len(x):,} characters (at most {MAX_JSON_STRING:,})")
        elif isinstance(x, int) and not isinstance(x, bool):
            if abs(x) >= 10**MAX_JSON_DIGITS:
                raise ValueError(f"an integer of more than {MAX_JSON_DIGITS} digits")
        elif isinstance(x, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"lists or objects nested more than {MAX_DEPTH} levels deep")
            if len(x) > MAX_JSON_ITEMS:
                kind = "an object" if isinstance(x, dict) else "a list"
                raise ValueError(f"{kind} of {len(x):,} entries (at most {MAX_JSON_ITEMS:,})")
            stack += [(c, depth + 1) for c in ([*x.keys(), *x.values()] if isinstance(x, dict) else x)]


_JSON_TYPES = (dict, list, tuple, str, int, float, bool, type(None))


def check_writable(obj, max_bytes: int) -> str:
    """The JSON text of ``obj`` if :func:`load_json` would read it back and it fits ``max_bytes``; else
    ``ValueError`` saying why (a value that is not JSON, a bound of ``check_tree``, the size)."""
    stack, seen = [obj], 0
    while stack and seen <= max_bytes:  # JSON types only (every value takes at least a byte of JSON)
        x, seen = stack.pop(), seen + 1
        if not isinstance(x, _JSON_TYPES):
            raise ValueError(
                f"a {type(x).__name__} value: only JSON values (numbers, strings, lists, objects)"
            )
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise ValueError("an object key that is not a string")
            stack += x.values()
        elif isinstance(x, (list, tuple)):
            stack += x
    check_tree(obj)
    text = json.dumps(obj)
    if len(text) > max_bytes:
        raise ValueError(f"{len(text):,} bytes of JSON (at most {max_bytes:,})")
    return text


def load_json(text: str | bytes):
    """``json.loads`` with integers, strings, containers and the document's size bounded. Raises
    ``ValueError`` (``json.JSONDecodeError`` is one) or ``RecursionError`` (deep nesting)."""
    obj = json.loads(text, parse_int=_bounded_int)
    check_tree(obj)
    return obj

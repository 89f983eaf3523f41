"""Bounded readers for the YAML and JSON files people hand filterprune (sweep files, report.json,
checkpoint descriptions, latency tables).

A few hundred bytes of YAML can stand for billions of nodes (anchors and aliases, the "billion laughs"),
and a JSON file can hold a 50 MB string, 200,000 list entries or an integer with 400 digits. Each of
those is refused here, before it is built or handed on, with a ``ValueError`` saying which bound it
broke; callers turn that into their one-line error naming the file.
"""
from __future__ import annotations

import json

import yaml

MAX_YAML_BYTES = 1 << 20  # sweep files are a few KB
MAX_YAML_ALIASES = 100  # references to an anchor (*name) in one file
MAX_YAML_NODES = 100_000  # nodes once every alias is expanded
MAX_JSON_DIGITS = 30  # an integer longer than this is no count or size filterprune writes
MAX_JSON_STRING = 100_000  # characters in one string (paths, class names, messages)
MAX_JSON_ITEMS = 100_000  # entries in one list or object
MAX_JSON_NODES = 2_000_000  # values in the whole document


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that counts aliases while it composes the node graph (aliases share their
    node there, so composing a bomb is cheap; building Python objects from it is not)."""

    aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise ValueError(f"more than {MAX_YAML_ALIASES} aliases (*name); write the values out")
        return super().compose_node(parent, index)


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
    """Refuse a parsed JSON value with an over-long string, list or object, or too many values."""
    stack, nodes = [obj], 0
    while stack:
        x = stack.pop()
        nodes += 1
        if nodes > MAX_JSON_NODES:
            raise ValueError(f"more than {MAX_JSON_NODES:,} values")
        if isinstance(x, str):
            if len(x) > MAX_JSON_STRING:
                raise ValueError(f"a string of {len(x):,} characters (at most {MAX_JSON_STRING:,})")
        elif isinstance(x, (list, dict)):
            if len(x) > MAX_JSON_ITEMS:
                kind = "a list" if isinstance(x, list) else "an object"
                raise ValueError(f"{kind} of {len(x):,} entries (at most {MAX_JSON_ITEMS:,})")
            stack += [*x.keys(), *x.values()] if isinstance(x, dict) else x


def load_json(text: str | bytes):
    """``json.loads`` with integers, strings, containers and the document's size bounded. Raises
    ``ValueError`` (``json.JSONDecodeError`` is one) or ``RecursionError`` (deep nesting)."""
    obj = json.loads(text, parse_int=_bounded_int)
    check_tree(obj)
    return obj

"""A name -> entry table shared by models, datasets and criteria.

The package's own entries are listed in ``catalog.py`` as ``"module:attr"`` references, imported the first
time a name is used: listing or checking names never imports torch. Code outside the package (a plugin, a
test) registers an object it already holds with the ``register`` decorator. Unknown names fail with the
list of valid ones.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from .errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, prefixes: tuple[str, ...] = ()):
        self.kind = kind
        self._refs: dict[str, tuple[str, dict[str, Any]]] = {}  # name -> ("module:attr", bound keywords)
        self._items: dict[str, T] = {}  # imported (or registered) entries
        self._help: dict[str, str] = {}
        self._task: dict[str, str] = {}  # name -> the task its entries serve, where not the default
        self.prefixes = prefixes  # parameterised names such as "tv:<name>" or "npz:<path>"

    def _claim(self, name: str, help: str) -> None:
        if name in self._refs or name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._help[name] = help

    def add(self, name: str, ref: str, help: str, task: str = "", /, **bound: Any) -> None:
        """An entry of the package: ``ref`` is ``"module:attr"`` under ``filterprune``, imported when the
        name is first used; ``bound`` keywords are bound to it (one builder serving several names);
        ``task``: the task it serves, where not every task (a detection dataset)."""
        self._claim(name, help)
        self._refs[name] = (ref, bound)
        if task:
            self._task[name] = task

    def task(self, name: str) -> str:
        """The task an entry serves ("" when any)."""
        return self._task.get(self.split(name)[0], "")

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        """Decorator: an entry from code outside the package (its docstring's first line as help)."""

        def deco(obj: T) -> T:
            doc = (getattr(obj, "__doc__", None) or "").strip()
            self._claim(name, help or (doc.splitlines()[0] if doc else ""))
            self._items[name] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        self._refs.pop(name, None)
        self._items.pop(name, None)
        self._help.pop(name, None)
        self._task.pop(name, None)

    def names(self) -> list[str]:
        """Registered names; a parameterised entry shows as e.g. 'tv:<name>'."""
        return sorted(n + "<name>" if n in self.prefixes else n for n in self._help)

    def help(self, name: str) -> str:
        return self._help.get(self.split(name.replace("<name>", ""))[0], "")

    def valid(self) -> str:
        return ", ".join(self.names())

    def split(self, name: str) -> tuple[str, str | None]:
        """'tv:mobilenet_v2' -> ('tv:', 'mobilenet_v2'); 'vgg16' -> ('vgg16', None)."""
        for p in self.prefixes:
            if name.startswith(p):
                return p, name[len(p) :]
        return name, None

    def check(self, name: str) -> None:
        """A UsageError unless ``name`` is registered (imports nothing)."""
        if self.split(name)[0] not in self._help:
            raise UsageError(f"unknown {self.kind} {name!r}; valid: {self.valid()}")

    def get(self, name: str) -> T:
        self.check(name)
        key, _ = self.split(name)
        if key not in self._items:
            ref, bound = self._refs[key]
            module, attr = ref.split(":")
            obj = getattr(importlib.import_module(f"filterprune.{module}"), attr)
            self._items[key] = cast(T, functools.partial(obj, **bound) if bound else obj)
        return self._items[key]

    def __contains__(self, name: str) -> bool:
        return self.split(name)[0] in self._help

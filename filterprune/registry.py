"""A name -> builder table shared by models, datasets and criteria.

Adding a model, dataset or criterion is one file that calls ``REGISTRY.register(name)``; nothing in the
pipeline changes. Unknown names fail with the list of valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from .errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, prefixes: tuple[str, ...] = ()):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._help: dict[str, str] = {}
        self.prefixes = prefixes  # parameterised names such as "tv:<name>" or "npz:<path>"

    def register(self, name: str, help: str = "") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            doc = (getattr(obj, "__doc__", None) or "").strip()
            self._help[name] = help or (doc.splitlines()[0] if doc else "")
            return obj

        return deco

    def names(self) -> list[str]:
        """Registered names; a parameterised entry shows as e.g. 'tv:<name>'."""
        return sorted(n + "<name>" if n in self.prefixes else n for n in self._items)

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

    def get(self, name: str) -> T:
        key, _ = self.split(name)
        if key not in self._items:
            raise UsageError(f"unknown {self.kind} {name!r}; valid: {self.valid()}")
        return self._items[key]

    def __contains__(self, name: str) -> bool:
        return self.split(name)[0] in self._items

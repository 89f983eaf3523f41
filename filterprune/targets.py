"""What a run prunes to: exactly one ``Target``, of one of the registered kinds.

``Sparsity`` (a fraction of channels), ``Macs`` (a fraction of the dense MACs), ``Speedup`` (a measured
speedup on the target runtime) or ``Latency`` (a measured latency in ms). Each kind knows its option key
(the flag ``--sparsity`` / ``--target-macs`` / ...), how it reads in a log line and a folder name, the
mask compression it implies for the mask criteria, how ``--steps K`` splits it, and whether its channel
counts come from measured latency. Adding a kind is one class with ``@register``. Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .errors import UsageError

KINDS: dict[str, type[Target]] = {}  # option key -> kind, in the order the options are listed


def register(cls: type[Target]) -> type[Target]:
    KINDS[cls.key] = cls
    return cls


@dataclass(frozen=True)
class Target:
    value: float
    key: ClassVar[str]  # the option that asks for it: sparsity, target_macs, target_speedup, target_latency
    measured: ClassVar[bool] = False  # channel counts from latencies measured on the target runtime

    def __post_init__(self):
        if not (
            isinstance(self.value, (int, float))
            and not isinstance(self.value, bool)
            and math.isfinite(self.value)
            and self.ok(self.value)
        ):
            raise UsageError(f"{self.key} must be {self.valid}, got {self.value!r}", (self.key,))

    valid: ClassVar[str] = ""  # the values it takes, for the error message
    text: ClassVar[str] = ""  # how it reads in a log line, ``{:g}`` the value
    prefix: ClassVar[str] = ""  # the value's prefix in a default output folder name

    @staticmethod
    def ok(v: float) -> bool:
        return True

    def label(self) -> str:
        return self.text.format(self.value)

    def tag(self) -> str:
        """The target in a default output folder name: ``s0.4``, ``m0.5``, ``x2``, ``ms10``."""
        return f"{self.prefix}{self.value:g}"

    def compression(self) -> float:
        """The mask compression c (density 10^-c) that the mask criteria aim at for this target."""
        raise NotImplementedError

    def steps(self, k: int) -> list[Target]:
        """The targets of ``--steps k`` cycles, measured against the dense network; the last is ``self``."""
        return [type(self)(self.value * i / k) for i in range(1, k + 1)]

    def to_dict(self) -> dict:
        return {"kind": self.key, "value": self.value}


@register
@dataclass(frozen=True)
class Sparsity(Target):
    key: ClassVar[str] = "sparsity"
    valid: ClassVar[str] = "in [0, 1)"
    text: ClassVar[str] = "sparsity {:g}"
    prefix: ClassVar[str] = "s"

    @staticmethod
    def ok(v: float) -> bool:
        return 0 <= v < 1

    def compression(self) -> float:  # density (1-s)^2: the fraction of a conv's weights that s leaves
        return -2 * math.log10(1 - self.value) if self.value > 0 else 0.0


@register
@dataclass(frozen=True)
class Macs(Target):
    key: ClassVar[str] = "target_macs"
    valid: ClassVar[str] = "in (0, 1]"
    text: ClassVar[str] = "MACs <= {:g} x dense"
    prefix: ClassVar[str] = "m"

    @staticmethod
    def ok(v: float) -> bool:
        return 0 < v <= 1

    def compression(self) -> float:  # the MAC fraction itself as the weight density
        return -math.log10(self.value)

    def steps(self, k: int) -> list[Target]:
        return [Macs(1 - (1 - self.value) * i / k) for i in range(1, k + 1)]


@register
@dataclass(frozen=True)
class Speedup(Target):
    key: ClassVar[str] = "target_speedup"
    measured: ClassVar[bool] = True
    valid: ClassVar[str] = "> 1"
    text: ClassVar[str] = "measured speedup {:g}x"
    prefix: ClassVar[str] = "x"

    @staticmethod
    def ok(v: float) -> bool:
        return v > 1

    def compression(self) -> float:  # the density 1/X
        return math.log10(self.value)

    def steps(self, k: int) -> list[Target]:  # each step measured against the network as it is: X^(1/K) each
        return [Speedup(self.value ** (1 / k))] * k


@register
@dataclass(frozen=True)
class Latency(Target):
    key: ClassVar[str] = "target_latency"
    measured: ClassVar[bool] = True
    valid: ClassVar[str] = "> 0 ms"
    text: ClassVar[str] = "measured latency {:g} ms"
    prefix: ClassVar[str] = "ms"

    @staticmethod
    def ok(v: float) -> bool:
        return v > 0

    def compression(self) -> float:  # unknown before measuring: the density of a 2x speedup
        return math.log10(2.0)

    def steps(self, k: int) -> list[Target]:
        if k > 1:
            raise UsageError(
                "target_latency is reached in one step; with steps use target_speedup",
                ("target_latency", "steps", "target_speedup"),
            )
        return [self]


def target_of(**values: float | None) -> Target:
    """The one target among the options given (``sparsity=0.4``, ``target_macs=None``, ...)."""
    given = {k: v for k, v in values.items() if v is not None}
    unknown = set(given) - set(KINDS)
    if unknown:
        raise UsageError(f"unknown target {sorted(unknown)[0]!r}; valid: {', '.join(KINDS)}", tuple(KINDS))
    if len(given) != 1:
        raise UsageError(
            f"give exactly one of {', '.join(KINDS)}" + (f" (got {', '.join(given)})" if given else ""),
            tuple(KINDS),
        )
    ((key, value),) = given.items()
    return KINDS[key](value)

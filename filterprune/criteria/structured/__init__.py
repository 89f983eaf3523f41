"""Structured criteria: each scores whole output channels directly (weights, BN scales, outputs)."""

from . import greedy, l1, magnitude, random, slimming  # noqa: F401  (registration)

"""Structured criteria: each scores whole output channels directly (weights, BN scales, outputs)."""

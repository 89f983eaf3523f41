"""The part of a task's data source that every folder of per-image annotations shares: the training images
split into train and a seeded validation part (which chooses the kept epoch, as for classification), the
test split kept for the report, and the validation split's digest (part of a cached baseline's key)."""

from __future__ import annotations

import hashlib

import torch


class HeldOut:
    """``data`` (``train``/``test`` lists of samples with a ``path``; ``class_names``, ``name``, ``source``,
    ``describe()``) with ``val_fraction`` of its training samples held out, drawn with ``seed``."""

    streamed = True  # never renormalised in memory
    in_channels = 3
    resize_size = None

    def __init__(self, data, val_fraction: float = 0.0, seed: int = 0):
        self.data, self.name, self.source = data, data.name, data.source
        self.class_names = list(data.class_names)
        n = len(data.train)
        k = min(max(1, round(n * val_fraction)), n - 1) if val_fraction > 0 and n > 1 else 0
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
        self._rows = {"train": sorted(order[k:]), "val": sorted(order[:k])}
        self.y_train: list = [data.train[i] for i in self._rows["train"]]
        self.y_val: list | None = [data.train[i] for i in self._rows["val"]] or None
        self.y_test: list = data.test

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def samples(self, split: str) -> list:
        found = {"train": self.y_train, "val": self.y_val, "test": self.y_test}.get(split)
        if found is None:
            raise ValueError(f"no {split!r} split")
        return found

    def val_digest(self) -> str:
        return hashlib.sha256(" ".join(s.path for s in self.y_val or []).encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.data.describe()}; {len(self.y_val or [])} training images held out for validation"

"""``ImageData``: a train/test split held in memory (uint8 NCHW images and labels), the one form every
dataset loads into, with the validation split carved from its training images."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch

from ..errors import UsageError
from .loader import memory_loader


@dataclass
class ImageData:
    """A train/test split held in memory: x uint8 (N, C, H, W), y int64 (N,)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    source: str  # where the images came from, told to the user
    flip: bool = True  # horizontal flip is a valid augmentation (not for digits)
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    x_val: torch.Tensor | None = None  # carved from training images (``carve_val``), never from test
    y_val: torch.Tensor | None = None
    streamed: ClassVar[bool] = False

    def __post_init__(self):
        if self.x_train.dtype != torch.uint8 or self.x_train.ndim != 4:
            raise UsageError(
                f"{self.name}: images must be uint8 (N, C, H, W), got "
                f"{self.x_train.dtype} {tuple(self.x_train.shape)}"
            )
        if len(self.x_train) != len(self.y_train) or len(self.x_test) != len(self.y_test):
            raise UsageError(f"{self.name}: image and label counts differ")
        if len(self.y_train) == 0 or len(self.y_test) == 0:
            raise UsageError(
                f"{self.name}: the train and test splits must both hold images "
                f"(got {len(self.y_train)} and {len(self.y_test)})"
            )
        self.y_train, self.y_test = self.y_train.long(), self.y_test.long()
        lo = min(self.y_train.min(), self.y_test.min()).item()
        hi = max(self.y_train.max(), self.y_test.max()).item()
        if lo < 0 or hi >= len(self.class_names):
            raise UsageError(f"{self.name}: labels must lie in [0, {len(self.class_names)}), got {lo}..{hi}")
        if not self.mean:  # per-channel statistics of the training split
            x = self.x_train.float().div_(255)
            self.mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
            self.std = tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-3).tolist())

    def carve_val(self, fraction: float, seed: int) -> ImageData:
        """A copy whose validation split is ``fraction`` of the training images (stratified per class,
        drawn with ``seed``), removed from training. The test split is untouched and never seen before the
        kept epoch is chosen; mean/std stay those of the whole training split, so every model of a seed is
        normalised alike."""
        if not 0 <= fraction <= 0.5:
            raise UsageError(f"--val-fraction must be in [0, 0.5], got {fraction}")
        if fraction == 0 or self.x_val is not None:
            return self
        gen = torch.Generator().manual_seed(seed)
        picked = []
        for c in range(self.num_classes):
            idx = (self.y_train == c).nonzero().flatten()
            picked.append(idx[torch.randperm(len(idx), generator=gen)[: round(fraction * len(idx))]])
        val = torch.cat(picked).sort().values
        keep = torch.ones(len(self.y_train), dtype=torch.bool)
        keep[val] = False
        if not len(val) or not keep.any():
            return self
        return replace(
            self,
            x_train=self.x_train[keep],
            y_train=self.y_train[keep],
            x_val=self.x_train[val],
            y_val=self.y_train[val],
            mean=self.mean,
            std=self.std,
        )

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of 'train', 'val' or 'test'."""
        if name == "val":
            if self.x_val is None or self.y_val is None:  # carve_val sets both
                raise ValueError(f"{self.name} has no validation split (carve_val)")
            return self.x_val, self.y_val
        return {"train": (self.x_train, self.y_train), "test": (self.x_test, self.y_test)}[name]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def make_loader(
        self,
        split: str,
        batch_size: int,
        augment: bool = False,
        shuffle: bool | None = None,
        seed: int = 0,
        limit: int | None = None,
        crop: bool = True,
    ):
        return memory_loader(self, split, batch_size, augment, shuffle, seed, limit, crop)

    def val_digest(self) -> str:
        return hashlib.sha256(self.x_val.numpy().tobytes()).hexdigest()[:16] if self.x_val is not None else ""

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]

    @property
    def image_size(self) -> int:
        return self.x_train.shape[-1]

    def describe(self) -> str:
        val = f" / {len(self.y_val)} validation" if self.y_val is not None else ""
        return (
            f"{self.name}: {len(self.x_train)} train{val} / {len(self.x_test)} test images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes "
            f"({self.source})"
        )

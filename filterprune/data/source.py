"""``DataSource``: what every dataset gives the pipeline, whether held in memory (``ImageData``), streamed
from an image folder (``stream.FolderData``) or the user's own DataLoaders (``stream.LoaderData``). The
pipeline uses only this; nothing tells the kinds apart by probing for attributes."""

from __future__ import annotations

from typing import Protocol

import torch
from torch.utils.data import DataLoader


class DataSource(Protocol):
    name: str
    source: str  # where the images came from, told to the user
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    y_train: torch.Tensor  # labels (their counts are reported)
    y_val: torch.Tensor | None  # the validation split carved from training images, if any
    y_test: torch.Tensor
    streamed: bool  # False: held in memory (normalised with the weights' mean/std when they have them)

    @property
    def num_classes(self) -> int: ...

    @property
    def in_channels(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    def make_loader(
        self,
        split: str,
        batch_size: int,
        augment: bool = False,
        shuffle: bool | None = None,
        seed: int = 0,
        limit: int | None = None,
        crop: bool = True,
    ) -> DataLoader: ...

    def val_digest(self) -> str:
        """Which images the validation split holds (part of the cached baseline's identity)."""
        ...

    def describe(self) -> str: ...

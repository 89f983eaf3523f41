"""``DataSource``: what every dataset gives the pipeline, whether held in memory (``ImageData``), streamed
from an image folder (``stream.FolderData``) or the user's own DataLoaders (``stream.LoaderData``). The
pipeline uses only this; nothing tells the kinds apart by probing for attributes."""

from __future__ import annotations

from collections.abc import Sized
from typing import Protocol

from torch.utils.data import DataLoader


class DataSource(Protocol):
    """Read-only: each kind holds these as attributes (or class attributes) of its own narrower types."""

    @property
    def name(self) -> str: ...

    @property
    def source(self) -> str:
        """Where the images came from, told to the user."""
        ...

    @property
    def class_names(self) -> list[str]: ...

    @property
    def mean(self) -> tuple[float, ...]: ...

    @property
    def std(self) -> tuple[float, ...]: ...

    @property
    def y_train(self) -> Sized:
        """The training labels, or as many items (only their counts are read)."""
        ...

    @property
    def y_val(self) -> Sized | None:
        """The validation split carved from training images, if any."""
        ...

    @property
    def y_test(self) -> Sized: ...

    @property
    def streamed(self) -> bool:
        """False: held in memory (normalised with the weights' mean/std when they have them)."""
        ...

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

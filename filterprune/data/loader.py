"""Batches for training and evaluation, with the seed study's augmentations
(random crop with 4-pixel padding, horizontal flip where it makes sense, small random rotation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .source import DataSource

if TYPE_CHECKING:
    from .images import ImageData  # annotations only: images.py makes its batches here

ROTATION_DEGREES = 15


class _Split(Dataset):
    def __init__(self, x, y, mean, std, augment: bool, flip: bool, crop: bool = True):
        self.x, self.y = x, y
        ops = []
        if augment:
            ops += [v2.RandomCrop(x.shape[-1], padding=x.shape[-1] // 8)] if crop else []
            if flip:
                ops.append(v2.RandomHorizontalFlip())
            ops.append(v2.RandomRotation(ROTATION_DEGREES))
        ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        self.transform = v2.Compose(ops)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def make_loader(
    data: DataSource,
    split: str,
    batch_size: int,
    augment: bool = False,
    shuffle: bool | None = None,
    seed: int = 0,
    limit: int | None = None,
    crop: bool = True,
) -> DataLoader:
    """A DataLoader over ``split`` ('train', 'val' or 'test'); ``limit`` keeps the first N images;
    ``crop=False`` drops the random crop from the augmentations (the seed recipe: rotation + flip). Each
    kind of data makes its own (``DataSource.make_loader``)."""
    return data.make_loader(
        split, batch_size, augment=augment, shuffle=shuffle, seed=seed, limit=limit, crop=crop
    )


def memory_loader(
    data: ImageData,
    split: str,
    batch_size: int,
    augment: bool,
    shuffle: bool | None,
    seed: int,
    limit: int | None,
    crop: bool,
) -> DataLoader:
    """Batches of images held in memory, with the seed study's augmentations when training."""
    x, y = data.split(split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    ds = _Split(x, y, data.mean, data.std, augment, data.flip, crop)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=(split == "train") if shuffle is None else shuffle,
        generator=gen,
        num_workers=0,
    )

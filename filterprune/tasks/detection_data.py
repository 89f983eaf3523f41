"""A detection folder (``data.detection.DetectionData``) as the pipeline's data source: the training images
split into train and a seeded validation part (which chooses the kept epoch, as for classification), the
test split kept for the report, and batches of (list of images, list of targets).

Images stay in [0, 1] and unnormalised (torchvision's detectors normalise inside), hence mean 0 / std 1.
Training flips images and their boxes horizontally at random (the one augmentation that needs no
resampling of the boxes).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import load_detection
from ..data.detection import DetectionData, collate
from ..errors import UsageError
from .held_out import HeldOut


class _Flipped(Dataset):
    """Each image and its boxes mirrored left-right with probability 1/2 (torch's global generator, which
    ``train`` seeds)."""

    def __init__(self, images: Dataset):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, target = self.images[i]
        if torch.rand(()) < 0.5:
            x, boxes = x.flip(-1), target["boxes"].clone()
            boxes[:, [0, 2]] = x.shape[-1] - target["boxes"][:, [2, 0]]
            target = {**target, "boxes": boxes}
        return x, target


class DetectionSource(HeldOut):
    """``DetectionData`` with a validation split, in the ``DataSource`` shape the pipeline reads."""

    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self, data: DetectionData, val_fraction: float = 0.0, seed: int = 0, image_size: int = 0):
        super().__init__(data, val_fraction, seed)
        self.image_size = image_size  # the side the detector resizes to (set by the task)
        if not sum(len(s.labels) for s in self.y_train):
            raise UsageError(f"{self.name}: no training image outside the validation split has an object")

    @classmethod
    def load(cls, dataset: str | None, val_fraction: float, seed: int) -> DetectionSource:
        if dataset is None:
            raise UsageError("task detection needs dataset coco:DIR or yolo:DIR", ("dataset",))
        return cls(load_detection(dataset), val_fraction, seed)

    def make_loader(
        self,
        split: str,
        batch_size: int,
        augment: bool = False,
        shuffle: bool | None = None,
        seed: int = 0,
        limit: int | None = None,
        crop: bool = True,
    ) -> DataLoader:
        """Batches of (list of images, list of targets); ``crop`` is the classification recipe's (unused)."""
        images: Dataset = (
            self.data.dataset("test")
            if split == "test"
            else Subset(self.data.dataset("train"), self._rows[split] if self.samples(split) else [])
        )
        if limit:
            images = Subset(images, range(min(limit, len(images))))  # type: ignore[arg-type]
        return DataLoader(
            _Flipped(images) if augment else images,
            batch_size=batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            generator=torch.Generator().manual_seed(seed),
            num_workers=0,
            collate_fn=collate,
        )

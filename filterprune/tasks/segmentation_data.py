"""A mask folder (``data.segmentation.SegmentationData``) as the pipeline's data source: the training images
split into train and a seeded validation part (which chooses the kept epoch), the test split kept for the
report, and batches of (images (N, 3, S, S), masks (N, S, S) int64).

Every image is letterboxed to the run's side S with its mask: scaled so its longer side is S (bilinear;
the mask nearest, so it keeps class indices), placed top-left, the rest padded with the mean colour (0
once normalised) and, in the mask, ``IGNORE``. torchvision's segmenters do not normalise inside (unlike
its detectors), so images are normalised here with ImageNet's mean/std, recorded as the run's. Training
flips images and masks horizontally at random. Metrics are computed at S, on the letterboxed masks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from ..catalog import DATASETS
from ..data.detection import where
from ..data.segmentation import IGNORE, Pair, SegmentationData
from ..data.stream import Undecodable, open_image
from ..errors import UsageError
from .held_out import HeldOut

MEAN = (0.485, 0.456, 0.406)  # ImageNet's, as torchvision's segmentation weights expect
STD = (0.229, 0.224, 0.225)
SIDE_STEP = 32  # the default side is the largest image side rounded up to this
MAX_DEFAULT_SIDE = 512


def letterbox(image: Image.Image, mask: Image.Image, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(side, side, 3) float32 normalised image and (side, side) uint8 mask, scaled into the top-left
    corner; padding is 0 (the mean) in the image and ``IGNORE`` in the mask."""
    w, h = image.size
    scale = side / max(w, h)
    size = (max(1, min(side, round(w * scale))), max(1, min(side, round(h * scale))))
    x = np.zeros((side, side, 3), np.float32)
    y = np.full((side, side), IGNORE, np.uint8)
    pixels = np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32) / 255
    x[: size[1], : size[0]] = (pixels - np.asarray(MEAN, np.float32)) / np.asarray(STD, np.float32)
    y[: size[1], : size[0]] = np.asarray(mask.resize(size, Image.Resampling.NEAREST))
    return x, y


class Pairs(Dataset):
    """Pairs decoded on access into (image (3, S, S) float, mask (S, S) int64); ``flip``: mirrored
    left-right with probability 1/2 (torch's global generator, which ``train`` seeds)."""

    def __init__(self, pairs: list[Pair], side: int, flip: bool = False):
        self.pairs, self.side, self.flip = pairs, side, flip

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        p = self.pairs[i]
        try:
            image, mask = open_image(Path(p.path)), Image.open(p.mask)
            mask.load()
        except Exception as e:  # truncated or damaged after the folder was read
            raise Undecodable(f"{where(Path(p.path))}: cannot be decoded ({type(e).__name__})") from None
        if image.size != mask.size:
            raise Undecodable(f"{where(Path(p.mask))}: changed size since the folder was read")
        x, y = letterbox(image, mask, self.side)
        xt, yt = torch.from_numpy(x.transpose(2, 0, 1).copy()), torch.from_numpy(y.astype(np.int64))
        if self.flip and torch.rand(()) < 0.5:
            xt, yt = xt.flip(-1), yt.flip(-1)
        return xt, yt


def default_side(pairs: list[Pair]) -> int:
    """The side when none is asked: the largest image side rounded up to ``SIDE_STEP``, at most
    ``MAX_DEFAULT_SIDE``."""
    largest = max(max(p.width, p.height) for p in pairs)
    return min(MAX_DEFAULT_SIDE, SIDE_STEP * -(-largest // SIDE_STEP))


class SegmentationSource(HeldOut):
    """``SegmentationData`` with a validation split, in the ``DataSource`` shape the pipeline reads."""

    mean = MEAN  # normalised as decoded, never in memory
    std = STD

    def __init__(self, data: SegmentationData, val_fraction: float = 0.0, seed: int = 0, side: int = 0):
        super().__init__(data, val_fraction, seed)
        self.image_size = side or default_side(data.train)

    @classmethod
    def load(
        cls, dataset: str | None, val_fraction: float, seed: int, side: int | None
    ) -> SegmentationSource:
        _, arg = DATASETS.split(dataset or "")
        if dataset is None or DATASETS.task(dataset) != "segmentation" or not arg:
            raise UsageError("task segmentation needs dataset masks:DIR", ("dataset",))
        return cls(DATASETS.get(dataset)(Path(arg)), val_fraction, seed, side or 0)

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
        """Batches of (images, masks); ``crop`` is the classification recipe's (unused). The train split
        drops its last incomplete batch where a full one remains, as torchvision's reference recipe does: a
        batch of one image fails DeepLabV3's pooling branch (a BatchNorm over one value per channel)."""
        images: Dataset = Pairs(self.samples(split) or [], self.image_size, flip=augment)
        if limit:
            images = Subset(images, range(min(limit, len(images))))  # type: ignore[arg-type]
        return DataLoader(
            images,
            batch_size=batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            generator=torch.Generator().manual_seed(seed),
            num_workers=0,
            drop_last=split == "train" and len(images) >= batch_size,  # type: ignore[arg-type]
        )

    def describe(self) -> str:
        return f"{super().describe()}; letterboxed to {self.image_size}x{self.image_size}"

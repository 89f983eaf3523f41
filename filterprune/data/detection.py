"""``DetectionData``: images with boxes, read from the user's COCO or YOLO folders (``coco.py``, ``yolo.py``).

Only the file list and the checked annotations are held in memory; images are decoded on access. A sample
is what torchvision's detectors and ultralytics take: an image tensor (C, H, W) float in [0, 1], not
normalised (both kinds of detector normalise inside the model), and a target
``{"boxes": float32 (N, 4) xyxy in pixels, "labels": int64 (N,)}``, labels indexing ``class_names``. Images
keep their own sizes, so a batch is a pair of lists (``collate``), never one stacked tensor.

Every annotation is checked when the folder is read, so a bad one is one ``UsageError`` naming its file and
line or annotation id before anything trains: boxes that leave the image by more than ``EDGE_SLACK`` pixels
(less is rounding in annotation tools and is clipped), empty boxes, unknown classes, missing images.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UsageError
from ..limits import printable
from .stream import FORMATS, MAX_PIXELS, Undecodable, open_image

EDGE_SLACK = 1.0  # pixels a box may overshoot an edge (clipped); more is refused
MAX_OBJECTS = 10_000  # boxes in one image (COCO's most crowded has ~90, LVIS's ~700)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
TEST_SPLITS = ("test", "val", "valid")  # the first present is the test split


@dataclass(frozen=True)
class Sample:
    """One image's checked annotations: ``boxes`` float32 (N, 4) xyxy pixels, ``labels`` int64 (N,)."""

    path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray


def where(path: Path) -> str:
    return printable(str(path), 200)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header of ``path`` (nothing decoded); a missing file, another format or a
    decompression bomb is one UsageError naming it."""
    from PIL import Image  # Pillow: only when a detection folder is read

    if not path.is_file():
        raise UsageError(f"{where(path)}: image not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as f, Image.open(f, formats=FORMATS) as img:
                w, h = img.size
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UsageError(f"{where(path)}: not a readable image ({type(e).__name__})") from None
    if w * h > MAX_PIXELS:
        raise UsageError(f"{where(path)}: {w}x{h} pixels is more than {MAX_PIXELS} (a decompression bomb?)")
    return w, h


def check_box(box: tuple[float, ...], width: int, height: int, at: str) -> tuple[float, ...]:
    """``box`` (x1, y1, x2, y2 pixels) clipped to the image; ``at`` says where it was read (file and line or
    annotation id). Refused: not finite, empty, or over an edge by more than ``EDGE_SLACK``."""
    x1, y1, x2, y2 = box
    if not all(math.isfinite(v) for v in box):
        raise UsageError(f"{at}: box coordinates must be finite numbers, got {box}")
    if x2 <= x1 or y2 <= y1:
        raise UsageError(f"{at}: empty box (width {x2 - x1:g}, height {y2 - y1:g} pixels)")
    s = EDGE_SLACK
    if x1 < -s or y1 < -s or x2 > width + s or y2 > height + s:
        raise UsageError(
            f"{at}: box x1,y1,x2,y2 = {x1:g},{y1:g},{x2:g},{y2:g} lies outside the {width}x{height} image"
        )
    clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise UsageError(f"{at}: box {box} is empty once clipped to the {width}x{height} image")
    return clipped


def sample(path: Path, size: tuple[int, int], boxes: list, labels: list, at: str) -> Sample:
    if len(boxes) > MAX_OBJECTS:
        raise UsageError(f"{at}: {len(boxes)} boxes in one image (at most {MAX_OBJECTS})")
    return Sample(
        str(path),
        size[0],
        size[1],
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
    )


def pick_test_split(root: Path, present) -> str:
    """The name of the test split: the first of ``TEST_SPLITS`` for which ``present(name)`` holds."""
    found = next((s for s in TEST_SPLITS if present(s)), None)
    if found is None:
        raise UsageError(f"{where(root)}: no test split ({', '.join(TEST_SPLITS)}); see docs/reference.md")
    return found


class _Images(Dataset):
    """Samples decoded on access into (image, target)."""

    def __init__(self, samples: list[Sample]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            img = open_image(Path(s.path))
        except Exception as e:  # truncated or damaged after its header was read
            raise Undecodable(f"{printable(s.path, 200)}: cannot be decoded ({type(e).__name__})") from None
        if img.size != (s.width, s.height):
            raise Undecodable(f"{printable(s.path, 200)}: changed size since the folder was read")
        # numpy, not torch: torch's threads cost 15x more than the work on an image this small
        x = torch.from_numpy(
            np.ascontiguousarray((np.asarray(img, dtype=np.float32) / 255).transpose(2, 0, 1))
        )
        return x, {"boxes": torch.from_numpy(s.boxes.copy()), "labels": torch.from_numpy(s.labels.copy())}


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """(images, targets) as lists: detection images keep their own sizes (torchvision's convention)."""
    return [b[0] for b in batch], [b[1] for b in batch]


@dataclass
class DetectionData:
    """A train/test split of images with boxes; ``class_names[label]`` names each label."""

    name: str
    source: str
    class_names: list[str]
    train: list[Sample]
    test: list[Sample]
    task = "detection"
    in_channels = 3

    def __post_init__(self):
        for split in ("train", "test"):
            if not getattr(self, split):
                raise UsageError(f"{self.name}: the {split} split holds no images")
        if not sum(len(s.labels) for s in self.train):
            raise UsageError(f"{self.name}: no training image has an object (every annotation is empty)")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> list[Sample]:
        if name not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {name!r}")
        return self.train if name == "train" else self.test

    def dataset(self, split: str) -> Dataset:
        return _Images(self.split(split))

    def make_loader(
        self,
        split: str,
        batch_size: int,
        shuffle: bool | None = None,
        seed: int = 0,
        limit: int | None = None,
        workers: int = 0,
    ) -> DataLoader:
        """Batches of (list of images, list of targets); ``limit`` keeps the first N images."""
        samples = self.split(split)
        return DataLoader(
            _Images(samples[:limit] if limit else samples),
            batch_size=batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            generator=torch.Generator().manual_seed(seed),
            num_workers=workers,
            collate_fn=collate,
        )

    def describe(self) -> str:
        def count(samples):
            return sum(len(s.labels) for s in samples)

        sides = [min(s.width, s.height) for s in self.train]
        return (
            f"{self.name}: {len(self.train)} train / {len(self.test)} test images "
            f"({count(self.train)} / {count(self.test)} objects; shorter side {min(sides)}-{max(sides)} px), "
            f"{self.num_classes} classes ({printable(self.source, 200)})"
        )

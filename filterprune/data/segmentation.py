"""``masks:DIR``: semantic segmentation folders (one class index per pixel), read and written.

    DIR/classes.txt                 one class name per line: line k names class k (k = 0: the background)
    DIR/images/train/<name>.jpg     any image format of ``IMAGE_SUFFIXES``, in sub-folders or not
    DIR/masks/train/<name>.png      the image's mask: a single-channel PNG (mode L, or P as VOC's are)
    DIR/images/test/...             (or val/, valid/: the first present is the test split)
    DIR/masks/test/...

A mask is the size of its image; each pixel holds its class index, or ``IGNORE`` (255) where it counts for
nothing (object edges, padding). Every mask is decoded and checked when the folder is read, so a bad one
is one ``UsageError`` naming the file before anything trains: a missing or extra mask, a size differing
from the image's, a value that is neither a class nor 255.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UsageError
from ..fileio import atomic_write_bytes
from .detection import IMAGE_SUFFIXES, Sample, image_size, pick_test_split, where

CLASSES = "classes.txt"
IGNORE = 255  # the mask value that counts for nothing
MAX_CLASSES = IGNORE  # class indices 0..254
MASK_MODES = ("L", "P")  # 8-bit single channel: grey, or a palette's indices (VOC)


@dataclass(frozen=True)
class Pair:
    """One image and its mask file, both ``width`` x ``height`` pixels."""

    path: str
    mask: str
    width: int
    height: int


@dataclass
class SegmentationData:
    """A train/test split of images with masks; ``class_names[k]`` names mask value k."""

    name: str
    source: str
    class_names: list[str]
    train: list[Pair]
    test: list[Pair]
    task = "segmentation"
    in_channels = 3

    def __post_init__(self):
        for split in ("train", "test"):
            if not getattr(self, split):
                raise UsageError(f"{self.name}: the {split} split holds no images")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        sides = [min(s.width, s.height) for s in self.train]
        return (
            f"{self.name}: {len(self.train)} train / {len(self.test)} test images (shorter side "
            f"{min(sides)}-{max(sides)} px), {self.num_classes} classes ({where(Path(self.source))})"
        )


def read_classes(root: Path) -> list[str]:
    path = root / CLASSES
    if not path.is_file():
        raise UsageError(f"{where(path)}: not found (one class name per line; see docs/reference.md)")
    try:
        names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (UnicodeDecodeError, OSError) as e:
        raise UsageError(f"{where(path)}: not a readable UTF-8 text file ({type(e).__name__})") from None
    if not 2 <= len(names) <= MAX_CLASSES:
        raise UsageError(f"{where(path)}: {len(names)} class names; a mask set has 2 to {MAX_CLASSES}")
    return names


def check_mask(path: Path, size: tuple[int, int], n_classes: int) -> None:
    """Refuse a mask that is missing, not 8-bit single-channel, of another size than its image
    (``size``), or holding a value that is neither a class index nor ``IGNORE``."""
    if not path.is_file():
        raise UsageError(f"{where(path)}: mask file missing (each image needs its .png mask)")
    actual = image_size(path)  # the header first: a decompression bomb is refused undecoded
    if actual != size:
        raise UsageError(
            f"{where(path)}: mask is {actual[0]}x{actual[1]} pixels but its image is {size[0]}x{size[1]}"
        )
    with Image.open(path) as img:
        if img.mode not in MASK_MODES:
            raise UsageError(f"{where(path)}: mask mode {img.mode}; a mask is single-channel 8-bit (L or P)")
        values = np.unique(np.asarray(img))
    bad = values[(values >= n_classes) & (values != IGNORE)]
    if bad.size:
        raise UsageError(
            f"{where(path)}: mask value {int(bad[0])} is no class (0..{n_classes - 1}) nor {IGNORE} (ignored)"
        )


def read_split(images: Path, mask_dir: Path, n_classes: int) -> list[Pair]:
    """The checked pairs of one split: every image under ``images`` with its mask under ``mask_dir``."""
    if not images.is_dir():
        raise UsageError(f"{where(images)}: not a folder of images")
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    stems: dict[Path, Path] = {}
    for f in files:
        stem = f.relative_to(images).with_suffix("")
        if stem in stems:
            raise UsageError(f"{where(f)}: shares its mask file with {where(stems[stem])}")
        stems[stem] = f
    for png in sorted(mask_dir.rglob("*.png")) if mask_dir.is_dir() else []:
        if png.relative_to(mask_dir).with_suffix("") not in stems:
            raise UsageError(f"{where(png)}: no image for this mask in {where(images)}")
    pairs = []
    for stem, f in stems.items():
        size = image_size(f)
        mask = mask_dir / stem.with_suffix(".png")
        check_mask(mask, size, n_classes)
        pairs.append(Pair(str(f), str(mask), *size))
    return pairs


def masks(root: Path) -> SegmentationData:
    """The ``masks:DIR`` folder, every mask checked."""
    if not root.is_dir():
        raise UsageError(f"{where(root)}: not a folder (masks layout: DIR/{CLASSES}, DIR/images|masks/train)")
    names = read_classes(root)
    train = read_split(root / "images" / "train", root / "masks" / "train", len(names))
    test = pick_test_split(root, lambda s: (root / "images" / s).is_dir())
    pairs = read_split(root / "images" / test, root / "masks" / test, len(names))
    return SegmentationData(f"masks:{root}", str(root), names, train, pairs)


def paint(sample: Sample) -> np.ndarray:
    """The mask of a pasted canvas: 0 (background) everywhere, each object's box painted with its class
    index + 1, later objects over earlier ones."""
    mask = np.zeros((sample.height, sample.width), np.uint8)
    for (x1, y1, x2, y2), label in zip(sample.boxes.astype(int).tolist(), sample.labels.tolist()):
        mask[y1:y2, x1:x2] = label + 1
    return mask


def write_masks(folder: Path, samples: list[Sample]) -> None:
    """``folder/<stem>.png``, the painted mask of each sample (its ``path`` relative to its images)."""
    folder.mkdir(parents=True, exist_ok=True)
    for s in samples:
        Image.fromarray(paint(s)).save(folder / Path(s.path).with_suffix(".png"))


def write_classes(root: Path, object_names: list[str]) -> None:
    """``root/classes.txt``: the background, then the objects' classes (mask value = label + 1)."""
    atomic_write_bytes(root / CLASSES, "".join(f"{n}\n" for n in ["background", *object_names]).encode())

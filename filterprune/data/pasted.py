"""The pasted-CIFAR detection set: real photos on real backgrounds with known boxes, made from a seed, for
tests and benchmarks of detectors where nothing can be downloaded.

Each canvas is W x H pixels (each side drawn from ``CANVAS_SIDES``); its background is a random crop (16-32
px square) of one CIFAR photo, upscaled bicubically; 1-4 other CIFAR photos are pasted on it whole, each
``OBJECT_SIDES`` wide with a height of 0.75-1.33 times that (clipped to the same range), flipped or not,
their class the photo's label. Objects never overlap (edges may touch): an object that finds no free place
in ``PLACE_TRIES`` draws is left out, so a small canvas holds fewer. Canvases of the train split use only
the source's training photos, those of the test split only its test photos; ``provenance.json`` lists
every canvas's photos by index. Canvas ``i`` of a split depends only on the seed, the split and ``i``, so a
larger set begins with the smaller one, and the same seed gives the same canvases in every layout.

The ``masks`` layout writes the same canvases for segmentation (``masks:OUT``): each object's rectangle
painted with its class index + 1 over a background of 0 (``segmentation.paint``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .. import outputs
from ..config import DEFAULT_DATA_ROOT
from ..errors import UsageError
from ..fileio import atomic_write_bytes, sha256_file
from ..log import say
from . import coco, segmentation, yolo
from .detection import Sample, where

CANVAS_SIDES = (160, 320)
OBJECT_SIDES = (32, 96)
BACKGROUND_CROP = (16, 32)  # side of the background photo's crop that is upscaled
MAX_OBJECTS = 4
PLACE_TRIES = 50
JPEG_QUALITY = 90
MAX_CANVASES = 100_000  # per split (about 25 KB each)
LAYOUTS = ("coco", "yolo", "masks")
SPLITS = {"train": 0, "test": 1}  # split -> its stream of the seed
DEFAULT_SOURCE = f"{DEFAULT_DATA_ROOT}/cifar10_mini.npz"


@dataclass
class Photos:
    """The source's photos of one split: x uint8 (N, H, W, 3), y int (N,)."""

    x: np.ndarray
    y: np.ndarray


def read_source(path: Path) -> tuple[dict[str, Photos], list[str]]:
    """Train and test photos and the class names of an npz shaped like cifar10_mini.npz."""
    if not path.is_file():
        raise UsageError(f"source not found: {where(path)} (an npz such as cifar10_mini.npz)", ("source",))
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zip errors, truncated files, pickled object arrays
        raise UsageError(f"{where(path)}: not a readable npz archive ({type(e).__name__})") from None
    splits = {}
    for split in SPLITS:
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None or y is None or x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise UsageError(
                f"{where(path)}: needs x_{split} uint8 (N, 3, H, W) and y_{split} (as cifar10_mini.npz)"
            )
        if y.ndim != 1 or len(y) != len(x) or not len(y) or not np.issubdtype(y.dtype, np.integer):
            raise UsageError(f"{where(path)}: y_{split} must be one integer label per image of x_{split}")
        splits[split] = Photos(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y.astype(np.int64))
    n = int(max(p.y.max() for p in splits.values())) + 1
    names = [str(s) for s in arrays["label_names"]] if "label_names" in arrays else [str(k) for k in range(n)]
    if min(p.y.min() for p in splits.values()) < 0 or n > len(names):
        raise UsageError(f"{where(path)}: labels must index label_names (0..{len(names) - 1})")
    return splits, names


def _free(box: tuple[int, int, int, int], placed: list) -> bool:
    x1, y1, x2, y2 = box
    return all(x2 <= a1 or x1 >= a2 or y2 <= b1 or y1 >= b2 for a1, b1, a2, b2 in placed)


def _background(photos: Photos, rng: np.random.Generator, size: tuple[int, int]) -> tuple[Image.Image, int]:
    idx = int(rng.integers(len(photos.x)))
    c = int(rng.integers(BACKGROUND_CROP[0], BACKGROUND_CROP[1] + 1))
    side = photos.x.shape[1]
    c = min(c, side)
    x0, y0 = (int(v) for v in rng.integers(0, side - c + 1, size=2))
    img = Image.fromarray(photos.x[idx]).crop((x0, y0, x0 + c, y0 + c))
    return img.resize(size, Image.Resampling.BICUBIC), idx


def canvas(photos: Photos, rng: np.random.Generator) -> tuple[Image.Image, list, list, dict]:
    """One canvas: the image, its boxes (xyxy pixels), their labels, and which photos it used."""
    w, h = (int(v) for v in rng.integers(CANVAS_SIDES[0], CANVAS_SIDES[1] + 1, size=2))
    img, bg = _background(photos, rng, (w, h))
    boxes: list[tuple[int, int, int, int]] = []
    labels, used = [], []
    lo, hi = OBJECT_SIDES
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        idx = int(rng.integers(len(photos.x)))
        ow = int(rng.integers(lo, hi + 1))
        oh = int(np.clip(round(ow * rng.uniform(0.75, 4 / 3)), lo, hi))
        flip = bool(rng.random() < 0.5)
        for _ in range(PLACE_TRIES):
            x, y = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
            if _free((x, y, x + ow, y + oh), boxes):
                break
        else:
            continue  # no free place on this canvas: one object fewer
        obj = Image.fromarray(photos.x[idx]).resize((ow, oh), Image.Resampling.BICUBIC)
        img.paste(obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else obj, (x, y))
        boxes.append((x, y, x + ow, y + oh))
        labels.append(int(photos.y[idx]))
        used.append(idx)
    return img, boxes, labels, {"background": bg, "objects": used}


def _split(images: Path, photos: Photos, n: int, seed: int, code: int) -> tuple[list[Sample], list[dict]]:
    """Write ``n`` canvases into the folder ``images``; returns their samples and provenance."""
    images.mkdir(parents=True)
    samples, made = [], []
    for i in range(n):
        img, boxes, labels, used = canvas(photos, np.random.default_rng([seed, code, i]))
        name = f"{i:06d}.jpg"
        img.save(images / name, quality=JPEG_QUALITY)
        samples.append(
            Sample(name, img.width, img.height, np.asarray(boxes, np.float32), np.asarray(labels, np.int64))
        )
        made.append({"file": name, **used})
    return samples, made


def _check(layout: str, counts: dict[str, int], seed: int) -> None:
    if layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}", ("layout",))
    for key, n in counts.items():
        if not (isinstance(n, int) and 1 <= n <= MAX_CANVASES):
            raise UsageError(f"{key} must be a count of canvases in 1..{MAX_CANVASES}, got {n!r}", (key,))
    if not (isinstance(seed, int) and 0 <= seed < 2**63):
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}", ("seed",))


def make_detection_set(
    out: str | Path,
    layout: str = "coco",
    train: int = 2000,
    test: int = 400,
    seed: int = 0,
    source: str | Path = DEFAULT_SOURCE,
    overwrite: bool = False,
) -> Path:
    """Write the pasted-CIFAR detection set to ``out`` in ``layout`` (read back by ``coco:OUT`` or
    ``yolo:OUT``; ``masks``: as segmentation masks, read back by ``masks:OUT``); returns the folder. ``out``
    appears complete or not at all."""
    _check(layout, {"train": train, "test": test}, seed)
    src = Path(source)
    photos, names = read_source(src)
    out = Path(out)
    outputs.check_target(out, overwrite)
    counts = {"train": train, "test": test}
    say(f"making {train} train / {test} test canvases ({layout} layout) from {where(src)}, seed {seed}")

    def write(folder: Path) -> None:
        made = {}
        for split, code in SPLITS.items():
            images = folder / "images" / split if layout == "masks" else folder / split / "images"
            samples, made[split] = _split(images, photos[split], counts[split], seed, code)
            if layout == "coco":
                coco.write_split(folder / split, samples, names)
            elif layout == "yolo":
                yolo.write_split(folder / split, samples)
            else:
                segmentation.write_masks(folder / "masks" / split, samples)
        if layout == "yolo":
            yolo.write_yaml(folder, names)
        if layout == "masks":
            segmentation.write_classes(folder, names)
        about = {
            "made_by": "filterprune make-detection-set",
            "source": src.name,
            "source_sha256": sha256_file(src),
            "layout": layout,
            "seed": seed,
            "overlap": "none",
            "canvases": made,  # photo indices into the source's x_train (train) and x_test (test)
        }
        atomic_write_bytes(folder / "provenance.json", json.dumps(about).encode())

    done = outputs.write_folder(out, write, overwrite)
    say(f"detection set: {done} ({layout}: {train} train / {test} test canvases)")
    return done

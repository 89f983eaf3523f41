"""Data that does not live in memory: image folders streamed from disk, and the user's own DataLoaders.

Both stand in for ``ImageData`` (``name``, ``source``, ``num_classes``, ``in_channels``, ``image_size``,
``mean``, ``std``, ``class_names``, ``flip``, ``y_train``/``y_test`` for the counts, ``describe()``) and
make their own batches through ``make_loader`` (``data.loader.make_loader`` dispatches to them), so
training, calibration and evaluation code never cares where images come from.

Image folders are read lazily by a DataLoader with workers at the model's input size, with torchvision's
and timm's transforms: RandomResizedCrop + horizontal flip for training, resize + center crop for
evaluation. Only the file list and labels are held in memory.

Decoding is restricted to the formats meant here (``FORMATS``): PIL never hands a file to another
decoder because of its contents (an EPS file named photo.png would otherwise reach Ghostscript), and an
image larger than ``MAX_PIXELS`` is refused before it is decoded (decompression bombs). Such files, and
unreadable ones, are skipped with a warning — at the scan, or, if decoding fails later, by serving the
next readable image — never sinking the run.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .. import limits
from ..errors import UsageError
from ..handed import check_batch
from ..limits import printable

log = logging.getLogger(__name__)

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
MAX_PIXELS = 8192 * 8192  # 64 Mpx: any photo; a bomb declares far more
STATS_SAMPLE = 256  # images decoded to estimate mean/std when no pretrained weights give them
CROP_PCT = 0.875  # resize = size / 0.875 before the center crop (torchvision's 256 for 224)
EVAL_PIXELS = 64 * 224 * 224  # evaluation batches hold at most this many pixels (memory at large sizes)
MAX_WORKERS = limits.MAX_WORKERS
DECODE_TRIES = 16  # consecutive undecodable files before a split is given up


def open_image(path: Path):
    """An RGB PIL image of ``path``, decoded only as one of ``FORMATS``; OSError/ValueError otherwise
    (including a file declaring more than ``MAX_PIXELS``)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with open(path, "rb") as f:
            img = Image.open(f, formats=FORMATS)
            if img.width * img.height > MAX_PIXELS:
                raise ValueError(
                    f"{img.width}x{img.height} pixels (more than {MAX_PIXELS}): a decompression bomb?"
                )
            return img.convert("RGB")


def _header_ok(path: Path) -> str | None:
    """None when the file is an image we decode; else why it is skipped (reads the header only)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open(path, "rb") as f, Image.open(f, formats=FORMATS) as img:
                if img.width * img.height > MAX_PIXELS:
                    return (
                        f"{img.width}x{img.height} pixels is more than {MAX_PIXELS} (a decompression bomb?)"
                    )
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return None


class Undecodable(UsageError):
    """Image files whose headers read but whose pixels do not decode (truncated, damaged). Raised in a
    DataLoader worker, torch re-raises it in the main process with the worker's traceback as its text:
    only the message itself is kept, so it stays one line."""

    def __init__(self, message: str = ""):
        marker = f"{type(self).__name__}: "
        super().__init__(
            message.rsplit(marker, 1)[-1].strip() if "Original Traceback" in message else message
        )


class _Files(Dataset):
    """(path, label) pairs decoded on access; a file that fails to decode is replaced by the next one."""

    def __init__(self, samples: list[tuple[str, int]], transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        why = ""
        for k in range(min(len(self.samples), DECODE_TRIES)):
            path, label = self.samples[(i + k) % len(self.samples)]
            try:
                return self.transform(open_image(Path(path))), label
            except Exception as e:  # truncated or damaged after the header: serve the next image
                why = f"{printable(path, 200)}: {type(e).__name__}: {printable(str(e), 120)}"
                warnings.warn(f"skipping unreadable image {why}", stacklevel=2)
        raise Undecodable(
            f"{min(len(self.samples), DECODE_TRIES)} consecutive images could not be decoded "
            f"(the last: {why}); remove or repair the damaged files"
        )


def transforms(size: int, resize: int, mean, std, train: bool, flip: bool = True):
    from torchvision.transforms import v2

    ops = (
        ([v2.RandomResizedCrop(size, antialias=True)] + ([v2.RandomHorizontalFlip()] if flip else []))
        if train
        else [v2.Resize(resize, antialias=True), v2.CenterCrop(size)]
    )
    return v2.Compose(
        [v2.PILToTensor(), *ops, v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    )


def default_workers() -> int:
    """``FILTERPRUNE_WORKERS``, else min(4, CPUs)."""
    raw = os.environ.get("FILTERPRUNE_WORKERS", "").strip()
    if not raw:
        return min(4, os.cpu_count() or 1)
    if not raw.isdigit() or int(raw) > MAX_WORKERS:
        raise UsageError(
            f"FILTERPRUNE_WORKERS must be a whole number of DataLoader workers in [0, {MAX_WORKERS}], "
            f"got {printable(raw, 40)!r}"
        )
    return int(raw)


class FolderData:
    """``imagefolder:PATH`` (``train/<class>/*`` and ``test/`` or ``val/``) streamed from disk."""

    streamed = True

    def __init__(
        self,
        root: Path,
        image_size: int = 224,
        resize_size: int | None = None,
        mean=None,
        std=None,
        train_subset: int | None = None,
        workers: int | None = None,
        seed: int = 0,
    ):
        root = Path(root)
        if not root.is_dir():
            raise UsageError(f"image folder not found: {root}")
        test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
        if not (root / "train").is_dir() or test_dir is None:
            raise UsageError(f"{root}: needs train/ and test/ (or val/) subfolders, one folder per class")
        self.class_names = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
        if not self.class_names:
            raise UsageError(f"{root}/train has no class folders")
        if image_size < 1:
            raise UsageError(f"--image-size must be >= 1, got {image_size}")
        if train_subset is not None and train_subset < 1:
            raise UsageError(f"--train-subset must be >= 1, got {train_subset}")
        self.name, self.source, self.flip, self.in_channels = f"imagefolder:{root}", str(root), True, 3
        self.image_size = image_size
        self.resize_size = resize_size or round(image_size / CROP_PCT)
        self.workers = default_workers() if workers is None else workers
        self.train = self._scan(root / "train")
        self.test = self._scan(test_dir)
        self._check_classes(root, test_dir)
        if train_subset is not None and train_subset < len(self.train):
            g = torch.Generator().manual_seed(seed)
            pick = sorted(torch.randperm(len(self.train), generator=g)[:train_subset].tolist())
            self.train = [self.train[i] for i in pick]
        self.val: list[tuple[str, int]] | None = None  # carve_val
        self.y_train = torch.tensor([y for _, y in self.train])
        self.y_test = torch.tensor([y for _, y in self.test])
        self.y_val: torch.Tensor | None = None
        self.mean_from = (
            "pretrained weights"
            if mean is not None
            else f"estimated from {min(STATS_SAMPLE, len(self.train))} training images"
        )
        self.mean: tuple[float, ...]
        self.std: tuple[float, ...]
        self.mean, self.std = (tuple(mean), tuple(std)) if mean is not None else self._estimate_stats(seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def carve_val(self, fraction: float, seed: int) -> FolderData:
        """A copy whose validation split is ``fraction`` of the training files (per class, drawn with
        ``seed``), removed from training, as ``ImageData.carve_val`` does; mean/std stay as they are."""
        import copy

        if not 0 <= fraction <= 0.5:
            raise UsageError(f"--val-fraction must be in [0, 0.5], got {fraction}")
        if fraction == 0 or self.val is not None:
            return self
        gen = torch.Generator().manual_seed(seed)
        val = []
        for c in range(self.num_classes):
            idx = (self.y_train == c).nonzero().flatten()
            val += idx[torch.randperm(len(idx), generator=gen)[: round(fraction * len(idx))]].tolist()
        if not val or len(val) == len(self.train):
            return self
        held = set(val)
        out = copy.copy(self)
        out.val = [self.train[i] for i in sorted(held)]
        out.train = [s for i, s in enumerate(self.train) if i not in held]
        out.y_train = torch.tensor([y for _, y in out.train])
        out.y_val = torch.tensor([y for _, y in out.val])
        return out

    def val_digest(self) -> str:
        """Which files were held out (part of the baseline cache key)."""
        import hashlib

        return hashlib.sha256("\n".join(p for p, _ in self.val or []).encode()).hexdigest()[:16]

    def _scan(self, split_dir: Path) -> list[tuple[str, int]]:
        samples, skipped = [], []
        for label, cls in enumerate(self.class_names):
            folder = split_dir / cls
            for f in sorted(folder.iterdir()) if folder.is_dir() else []:
                if not f.is_file():
                    continue
                why = _header_ok(f)
                if why is None:
                    samples.append((str(f), label))
                else:
                    skipped.append((f, why))
        if skipped:
            f, why = skipped[0]
            warnings.warn(
                f"{split_dir}: skipped {len(skipped)} file(s) that are not readable images of "
                f"{'/'.join(FORMATS)} (e.g. {f.name}: {why})",
                stacklevel=3,
            )
        if not samples:
            raise UsageError(f"{split_dir}: no readable images")
        return samples

    def _check_classes(self, root: Path, test_dir: Path) -> None:
        """Every class folder of train/ holds training images (an empty one, or a link to a folder of
        folders such as train/ itself, is no class), and test/ has no class that train/ lacks (its images
        would be dropped); the first images of each split decode."""
        counts = torch.bincount(torch.tensor([y for _, y in self.train]), minlength=self.num_classes)
        empty = [self.class_names[i] for i in (counts == 0).nonzero().flatten().tolist()]
        if empty:
            raise UsageError(
                f"{root}/train: class folder(s) {', '.join(printable(n, 60) for n in empty[:5])} hold "
                "no readable images; every class needs training images (remove the folder or link)"
            )
        extra = sorted(
            d.name for d in test_dir.iterdir() if d.is_dir() and d.name not in set(self.class_names)
        )
        if extra:
            raise UsageError(
                f"{test_dir}: class folder(s) {', '.join(printable(n, 60) for n in extra[:5])} are "
                "not in train/, so no model trained on it can predict them (add their training "
                f"images, or remove them from {test_dir.name}/)"
            )
        for samples in (self.train, self.test):
            _Files(samples, lambda img: None)[0]  # raises Undecodable when none of the first files decodes

    def _estimate_stats(self, seed: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.train), generator=g)[:STATS_SAMPLE].tolist()
        ds = _Files(
            [self.train[i] for i in idx],
            transforms(self.image_size, self.resize_size, (0, 0, 0), (1, 1, 1), False),
        )
        s, s2, n = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0
        for x, _ in DataLoader(ds, batch_size=32, num_workers=0):
            x = x.double()
            s += x.sum(dim=(0, 2, 3))
            s2 += (x * x).sum(dim=(0, 2, 3))
            n += x.shape[0] * x.shape[2] * x.shape[3]
        mean = s / n
        std = (s2 / n - mean**2).clamp_min(1e-6).sqrt().clamp_min(1e-3)
        return tuple(mean.tolist()), tuple(std.tolist())

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
        """``crop`` is accepted for the in-memory loader's signature: RandomResizedCrop is the training
        transform of image folders whatever the recipe."""
        if split == "val":
            if self.val is None:
                raise ValueError(f"{self.name} has no validation split (carve_val)")
            samples = self.val
        else:
            samples = {"train": self.train, "test": self.test}[split]
        ds = _Files(
            samples[:limit] if limit else samples,
            transforms(self.image_size, self.resize_size, self.mean, self.std, augment, self.flip),
        )
        if not augment:  # evaluation and calibration: cap the pixels per batch (memory at 224 px and up)
            batch_size = max(1, min(batch_size, EVAL_PIXELS // (self.image_size**2)))
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=(split == "train") if shuffle is None else shuffle,
            generator=gen,
            num_workers=self.workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def describe(self) -> str:
        val = f" / {len(self.val)} validation" if self.val else ""
        return (
            f"{self.name}: {len(self.train)} train{val} / {len(self.test)} test images, "
            f"streamed from disk at 3x{self.image_size}x{self.image_size} "
            f"(resize {self.resize_size} + center crop for evaluation), "
            f"{self.num_classes} classes, mean/std {self.mean_from} ({self.workers} loader workers)"
        )


class LoaderData:
    """The user's own DataLoaders (``compress(model=..., train=loader, test=loader)``) yielding
    ``(images, labels)``: batches are used as they come (the loaders own batch size, augmentation and
    normalisation). Shapes come from the first batch; ``num_classes`` from the caller or the model."""

    streamed = True

    def __init__(
        self,
        train,
        test=None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        names: tuple[str, str] = ("train", "test"),
    ):
        if train is None:
            raise UsageError(f"a training DataLoader is needed ({names[0]}=...)", (names[0],))
        self.train, self.test = train, test if test is not None else train
        self.names = names  # the Python parameters the loaders were handed over as, for the messages
        x, _ = _first_batch(self.train, names[0])
        if x.shape[-1] != x.shape[-2]:
            raise UsageError(
                f"{names[0]}: images must be square (N, C, H, W) tensors, got {tuple(x.shape)}", (names[0],)
            )
        self.in_channels, self.image_size = int(x.shape[1]), int(x.shape[-1])
        found = class_names or list(getattr(getattr(train, "dataset", None), "classes", []) or [])
        n = num_classes or len(found)
        self.class_names = found if found and len(found) == n else [str(i) for i in range(n)] if n else []
        self.name, self.source, self.flip = "loaders", "DataLoaders given in Python", False
        self.mean: tuple[float, ...] = ()  # the loaders normalise
        self.std: tuple[float, ...] = ()
        # counts for reports and cache keys (the labels themselves stay in the loaders)
        self.y_train, self.y_test = range(_count(self.train)), range(_count(self.test))
        self.y_val: range | None = None  # the loaders are used as given: no validation split is carved

    def carve_val(self, fraction: float, seed: int) -> LoaderData:
        return self

    def val_digest(self) -> str:
        return ""  # no validation split is carved from the user's loaders

    def set_num_classes(self, n: int) -> None:
        if not self.class_names:
            self.class_names = [str(i) for i in range(n)]

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
        if split == "val":
            raise ValueError("DataLoaders given in Python have no validation split")
        loader = self.train if split == "train" else self.test
        if (
            limit is not None
            and getattr(loader, "dataset", None) is not None
            and hasattr(loader.dataset, "__len__")
        ):
            loader = DataLoader(
                Subset(loader.dataset, range(min(limit, len(loader.dataset)))),
                batch_size=loader.batch_size or batch_size,
                collate_fn=loader.collate_fn,
            )
        return _Checked(
            loader,
            self.names[split != "train"],
            (self.in_channels, self.image_size, self.image_size),
            self.num_classes or None,
        )

    def describe(self) -> str:
        return (
            f"{self.name}: {len(self.y_train)} train / {len(self.y_test)} test images, "
            f"{self.in_channels}x{self.image_size}x{self.image_size}, "
            f"{self.num_classes} classes ({self.source})"
        )


class _Checked:
    """The user's loader as filterprune iterates it: each batch checked (``handed.check_batch``) before a
    criterion or the training loop meets it; everything else is the loader's own."""

    def __init__(self, loader, param: str, shape: tuple[int, ...], num_classes: int | None):
        self.loader, self.param, self.shape, self.num_classes = loader, param, shape, num_classes

    def __iter__(self):
        for batch in self.loader:
            yield check_batch(batch, self.param, self.shape, self.num_classes)

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def _first_batch(loader, what: str):
    try:
        batch = next(iter(loader))
    except StopIteration:
        raise UsageError(f"{what} yields no batches", (what,)) from None
    return check_batch(batch, what)


def _count(loader) -> int:
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError):
        return sum(len(y) for _, y, *_ in loader)


def typical_side(root: Path, n: int = 32) -> int | None:
    """The median shorter side of up to ``n`` training images of an image folder (headers only: PIL reads
    the size without decoding); None when none can be read."""
    from PIL import Image  # PIL: only to read image folders

    train = root / "train"
    files = (
        sorted(f for c in sorted(train.iterdir()) if c.is_dir() for f in sorted(c.iterdir())[:n])
        if train.is_dir()
        else []
    )
    sides = []
    for f in files[:: max(1, len(files) // n)][:n]:
        try:
            with Image.open(f) as im:
                sides.append(min(im.size))
        except (OSError, ValueError):
            continue
    return sorted(sides)[len(sides) // 2] if sides else None

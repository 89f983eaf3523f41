"""Datasets by name. Every source is loaded into the same in-memory form (``images.ImageData``: uint8
NCHW tensors + labels), so training, calibration and evaluation code never cares where images came
from; ``catalog.DATASETS`` names every dataset, ``loader.make_loader`` batches.

Parameterised names: ``npz:PATH`` and ``imagefolder:PATH``; ``coco:DIR`` and ``yolo:DIR`` are detection
folders (``detection.DetectionData``), which the classification pipeline refuses. The offline default is
``digits`` (scikit-learn's bundled handwritten digits), which needs no file and no network.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..catalog import DATASETS
from ..config import DEFAULT_DATA_ROOT, check_classification  # defined once, with the option
from ..errors import UsageError
from ..log import say
from . import torchvision_sets
from .detection import DetectionData
from .images import ImageData
from .loader import make_loader

__all__ = [
    "DATASETS",
    "DetectionData",
    "ImageData",
    "check_classification",
    "load_detection",
    "load_data",
    "load_dataset",
    "make_loader",
    "resolve_default_dataset",
]


def load_dataset(name: str, data_root: str | Path = DEFAULT_DATA_ROOT, **options) -> ImageData:
    """``options`` (image_size, resize_size, mean, std, train_subset, workers, seed) reach the datasets that
    take them (``imagefolder:``, streamed at the model's input size); in-memory sets ignore them."""
    loader = DATASETS.get(name)
    check_classification(name)
    _, arg = DATASETS.split(name)
    root = Path(data_root)
    if arg is not None and name.startswith("imagefolder:"):
        return loader(Path(arg), **options)
    if "image_size" in inspect.signature(loader).parameters:  # made at the size asked (synthetic)
        return loader(root, image_size=options.get("image_size"))
    return loader(Path(arg)) if arg is not None else loader(root)


def load_detection(name: str) -> DetectionData:
    """A detection folder (``coco:DIR`` or ``yolo:DIR``), every annotation checked (``detection.py``)."""
    prefix, arg = DATASETS.split(name)
    if DATASETS.task(name) != "detection" or not arg:
        raise UsageError(f"dataset {name!r} is no detection folder; give coco:DIR or yolo:DIR", ("dataset",))
    return DATASETS.get(name)(Path(arg))


def resolve_default_dataset(data_root: str | Path) -> tuple[str, str | None]:
    """The dataset used when none is named: CIFAR-10 if it is under the data root, else the embedded one."""
    if torchvision_sets.find_local("cifar10", Path(data_root)) is not None:
        return "cifar10", None
    return "digits", (
        f"no CIFAR-10 under {data_root!s}/ (cifar-10-batches-py or cifar10*.npz); using the "
        "embedded scikit-learn digits dataset instead (pass --dataset/--data-root to choose)"
    )


def load_data(
    dataset: str | None, data_root: str, val_fraction: float = 0.0, seed: int = 0, **options
) -> ImageData:
    """Load the named dataset, or the default one with a notice saying which it is; ``val_fraction`` of
    the training images (drawn with ``seed``) become the validation split that chooses kept epochs.
    ``options`` reach streamed datasets (image size, preprocessing: see ``inputs.prepare``)."""
    if dataset is None:
        dataset, notice = resolve_default_dataset(data_root)
        if notice:
            say(f"notice: {notice}")
    data = load_dataset(dataset, data_root, seed=seed, **options).carve_val(val_fraction, seed)
    say(f"data: {data.describe()}")
    return data

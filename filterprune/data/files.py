"""Datasets from the user's own files: ``npz:PATH`` arrays and ``imagefolder:PATH`` class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .images import ImageData
from .stream import FolderData

NPZ_TEST_FRACTION = 0.2
MAX_CLASSES = 100_000


def _nchw(a: np.ndarray, path: Path) -> torch.Tensor:
    if a.dtype != np.uint8:
        raise UsageError(f"{path}: images must be uint8, got {a.dtype}")
    if a.ndim == 3:  # (N, H, W) greyscale
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):  # NHWC
        a = a.transpose(0, 3, 1, 2)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[2] != a.shape[3]:
        raise UsageError(
            f"{path}: expected square images shaped (N, C, H, W) with C in 1 or 3, got {a.shape}"
        )
    return torch.from_numpy(np.ascontiguousarray(a))


def _labels(a: np.ndarray, path: Path) -> torch.Tensor:
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise UsageError(f"{path}: labels must be a 1-D integer array, got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= MAX_CLASSES):
        raise UsageError(f"{path}: labels must lie in [0, {MAX_CLASSES}), got {a.min()}..{a.max()}")
    return torch.from_numpy(a.astype(np.int64))


def read_npz(path: Path, name: str) -> ImageData:
    """Arrays x_train/y_train/x_test/y_test (as in ../shared/data/cifar10_mini.npz), or x/y, which are
    split 80/20 with a fixed seed (as for mnist_test.npz). Optional label_names."""
    if not path.is_file():
        raise UsageError(f"npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zip errors, truncated files, pickled object arrays
        raise UsageError(f"{path}: not a readable npz archive ({type(e).__name__}: {e})") from None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        xtr, ytr = _nchw(arrays["x_train"], path), _labels(arrays["y_train"], path)
        xte, yte = _nchw(arrays["x_test"], path), _labels(arrays["y_test"], path)
    elif {"x", "y"} <= arrays.keys():
        x, y = _nchw(arrays["x"], path), _labels(arrays["y"], path)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
        n_test = int(len(y) * NPZ_TEST_FRACTION)
        xte, yte, xtr, ytr = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
    else:
        raise UsageError(
            f"{path}: needs arrays x_train, y_train, x_test, y_test (or x, y); has {sorted(arrays)}"
        )
    if not (len(ytr) and len(yte)):
        raise UsageError(
            f"{path}: the train and test splits must both hold images (got {len(ytr)} and {len(yte)})"
        )
    n_classes = int(max(ytr.max(), yte.max())) + 1
    names = (
        [str(s) for s in arrays["label_names"]]
        if "label_names" in arrays
        else [str(i) for i in range(n_classes)]
    )
    return ImageData(name, xtr, ytr, xte, yte, names, source=str(path), flip=xtr.shape[1] == 3)


def npz(path: Path) -> ImageData:
    return read_npz(path, f"npz:{path}")


def imagefolder(
    path: Path,
    image_size: int = 32,
    resize_size: int | None = None,
    mean=None,
    std=None,
    train_subset: int | None = None,
    workers: int | None = None,
    seed: int = 0,
):
    """Streamed lazily (``data.stream.FolderData``); ``compress`` passes the model's input size and, with
    pretrained weights, their preprocessing."""
    return FolderData(path, image_size, resize_size, mean, std, train_subset, workers, seed)

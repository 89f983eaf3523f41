"""The standard benchmarks, read from ``--data-root``.

Each is found, in order, as the torchvision layout (e.g. ``cifar-10-batches-py/``) or as an npz file
(``cifar10.npz`` / ``cifar10_mini.npz``, the arrays of ``npz:``); failing both, the error says what to put
where. Nothing is downloaded: filterprune never opens a network connection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from .files import read_npz
from .images import ImageData

# name -> (torchvision class, its folder under root, npz stems, horizontal flip allowed)
_SOURCES = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ("cifar10", "cifar10_mini"), True),
    "cifar100": ("CIFAR100", "cifar-100-python", ("cifar100", "cifar100_mini"), True),
    "mnist": ("MNIST", "MNIST/raw", ("mnist", "mnist_test"), False),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", ("fashion-mnist", "fashion_mnist"), True),
    "svhn": ("SVHN", "train_32x32.mat", ("svhn",), False),
}


def missing(name: str, root: Path) -> str | None:
    """Why ``name`` cannot be read under ``root`` without loading it (None: it is there, or is not a
    benchmark set read from ``--data-root``): what a sweep's dry run checks before any run starts."""
    if name not in _SOURCES or find_local(name, root) is not None:
        return None
    return f"{name} not found under {root}/ (put {_SOURCES[name][1]} or {_SOURCES[name][2][0]}.npz there)"


def find_local(name: str, root: Path) -> Path | None:
    _, folder, stems, _ = _SOURCES[name]
    if (root / folder).exists():
        return root / folder
    for stem in stems:
        if (root / f"{stem}.npz").is_file():
            return root / f"{stem}.npz"
    return None


def _from_torchvision(name: str, root: Path) -> ImageData:
    import torchvision.datasets as tvd

    cls_name, _, _, flip = _SOURCES[name]
    cls = getattr(tvd, cls_name)
    kw = ({"split": "train"}, {"split": "test"}) if name == "svhn" else ({"train": True}, {"train": False})
    train, test = cls(str(root), download=False, **kw[0]), cls(str(root), download=False, **kw[1])

    def arrays(ds):
        x = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        if x.ndim == 3:
            x = x[:, None]
        elif x.shape[-1] == 3:
            x = x.transpose(0, 3, 1, 2)
        y = np.asarray(ds.labels if name == "svhn" else ds.targets)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))

    (xtr, ytr), (xte, yte) = arrays(train), arrays(test)
    classes = list(getattr(train, "classes", [])) or [str(i) for i in range(10)]
    return ImageData(name, xtr, ytr, xte, yte, classes, source=f"torchvision layout under {root}", flip=flip)


def _load(name: str, root: Path) -> ImageData:
    found = find_local(name, root)
    if found is not None and found.suffix == ".npz":
        data = read_npz(found, name)
        data.flip = _SOURCES[name][3]
        return data
    if found is not None:
        try:
            return _from_torchvision(name, root)
        except (OSError, RuntimeError, ValueError) as e:  # torchvision checks md5 sums before unpickling
            raise UsageError(
                f"{found}: {name} files are incomplete or corrupted "
                f"({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})"
            ) from None
    raise UsageError(
        f"{name} not found under {root}/ (nothing is downloaded): put {_SOURCES[name][1]} or "
        f"{_SOURCES[name][2][0]}.npz there, pass --data-root, or use --dataset digits (embedded)"
    )


def load(root: Path, *, name: str) -> ImageData:
    """The benchmark set ``name`` (a key of ``_SOURCES``) from ``root``."""
    return _load(name, root)

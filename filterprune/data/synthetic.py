"""Random images with random labels: shapes only, for structure and speed checks (accuracy means nothing).
At the model's native input size (224 for ImageNet tv/timm models) or ``--image-size``, so any model can be
pruned, exported and timed without images."""

import torch

from .images import ImageData


def synthetic(root, image_size: int | None = None, n_train=512, n_test=128, classes=10) -> ImageData:
    size = image_size or 32
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_test, 3, size, size), generator=g, dtype=torch.uint8)
    y = torch.randint(0, classes, (n_train + n_test,), generator=g)
    return ImageData(
        "synthetic",
        x[:n_train],
        y[:n_train],
        x[n_train:],
        y[n_train:],
        [str(i) for i in range(classes)],
        source="random pixels",
    )

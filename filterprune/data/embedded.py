"""The offline default: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, 10 classes),
upsampled to 32x32 and repeated to 3 channels so CIFAR-shaped models run on it unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .images import ImageData

SIZE = 32
TEST_FRACTION = 0.2


def digits(root) -> ImageData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N,1,8,8) in [0,1]
    x = F.interpolate(x, size=SIZE, mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # fixed split
    n_test = int(len(y) * TEST_FRACTION)
    te, tr = perm[:n_test], perm[n_test:]
    return ImageData(
        "digits",
        x[tr],
        y[tr],
        x[te],
        y[te],
        [str(i) for i in range(10)],
        source="scikit-learn bundled digits, upsampled",
        flip=False,
    )

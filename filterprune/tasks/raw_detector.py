"""What a detector exports to ONNX and times: the network without its post-processing, as deployers run
it (anchor decoding, score thresholds and NMS stay outside, in the deployer's own code).

``RawDetector`` takes a batch (N, 3, S, S) of images in [0, 1] already resized to the detector's side S,
normalises it with the detector's own mean/std, runs the backbone and the head, and returns one tensor
(N, anchors, 4 box regressions [+ 1 centerness for FCOS] + classes logits) in the head's anchor order.
Single-stage detectors (SSD, SSDlite, RetinaNet, FCOS) have such a network; the two-stage R-CNNs do not
(their second stage pools the proposals the first stage's NMS chose), so ``raw_detector`` gives None.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

HEAD_KEYS = ("bbox_regression", "bbox_ctrness", "cls_logits")  # concatenated in this order, where present


class RawDetector(nn.Module):
    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector
        t: Any = detector.transform
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(t.image_mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(t.image_std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = head_outputs(self.detector, (x - self.mean) / self.std)
        return torch.cat([out[k] for k in HEAD_KEYS if k in out], dim=-1)


def head_outputs(detector: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A single-stage detector's head outputs (``cls_logits``, ``bbox_regression``, ...) on a batch its
    transform already resized and normalised."""
    net: Any = detector
    features = net.backbone(x)
    return net.head(list(features.values()) if isinstance(features, dict) else [features])


def raw_detector(detector: nn.Module) -> RawDetector | None:
    """The exportable network of a single-stage torchvision detector, else None."""
    return RawDetector(detector) if single_stage(detector) else None


def single_stage(detector: nn.Module) -> bool:
    return hasattr(detector, "head") and hasattr(detector, "anchor_generator")

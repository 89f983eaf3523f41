"""The detection task's side for ultralytics YOLO (``yolo:`` models): its own loss, predictions through
NMS, and the network it exports.

Images of any size are letterboxed: scaled so their longer side is the model's input side S (a multiple
of its largest stride) and placed at the top left of an S x S canvas of ultralytics' grey (114/255); boxes
follow the scale, and predictions are divided by it back into the image's own pixels. YOLO has no
background class: labels are the dataset's 0-based classes throughout.

Training runs the model's own criterion (``init_criterion``: ultralytics' v8DetectionLoss, or its
end-to-end loss for v10/26 heads) on ultralytics' batch dict (``batch_idx``, ``cls``, normalised xywh
``bboxes``). That criterion returns the loss times the batch size; it is divided back, so the learning
rate means what it means for the other tasks (a mean over the batch). Distilled finetuning adds the dense
model's head outputs on the same letterboxed batch (its eval-mode raw dict; ``detect_distill.py``).

Evaluation takes the eval-mode output, (N, 4 + classes, anchors) of xywh boxes in input pixels and class
probabilities, through ultralytics' validation NMS: every class above 0.001 per box, per-class IoU 0.7
(torchvision's ``batched_nms``), at most 300 detections per image. ``YoloRaw`` is that output alone,
what is exported to ONNX (NMS stays with the deployer, as in ultralytics' own ONNX files).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_convert

from ..errors import UsageError
from .detect_distill import yolo_branches, yolo_distill

PAD = 114 / 255  # ultralytics' letterbox grey
CONF, IOU, MAX_DET, MAX_NMS = 0.001, 0.7, 300, 30_000  # ultralytics' validation settings
MAX_SIDE = 640  # the default input side stops at ultralytics' own


class YoloRaw(nn.Module):
    """(N, 3, S, S) letterboxed images in [0, 1] -> (N, 4 + classes, anchors): xywh boxes in input pixels
    and class probabilities, before NMS."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return decoded(self.model(x))


def decoded(out) -> torch.Tensor:
    """The decoded predictions of an eval-mode forward (ultralytics returns them with its raw dict)."""
    return out[0] if isinstance(out, (tuple, list)) else out


def default_side(sizes: list[tuple[int, int]], stride: int) -> int:
    """The input side when none is asked: the largest image side rounded up to the stride, at most 640."""
    largest = max((max(w, h) for w, h in sizes), default=MAX_SIDE)
    return min(MAX_SIDE, stride * math.ceil(largest / stride))


def check_side(side: int, stride: int) -> None:
    if side % stride:
        raise UsageError(
            f"image_size {side}: a YOLO input side must be a multiple of its stride {stride}", ("image_size",)
        )


def letterbox(images: list[torch.Tensor], side: int) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """(N, 3, side, side) of the images scaled into the top-left corner, and each one's (x, y) scale."""
    batch = images[0].new_full((len(images), 3, side, side), PAD)
    scales = []
    for i, x in enumerate(images):
        h, w = x.shape[-2:]
        r = side / max(h, w)
        nh, nw = max(1, round(h * r)), max(1, round(w * r))
        batch[i, :, :nh, :nw] = F.interpolate(
            x[None].float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=r < 1
        )[0]
        scales.append((nw / w, nh / h))
    return batch, scales


def yolo_targets(targets: list[dict], scales: list[tuple[float, float]], side: int) -> dict:
    """ultralytics' batch dict from our targets (xyxy pixels of each image, 0-based labels): ``batch_idx``
    (M,), ``cls`` (M, 1) and ``bboxes`` (M, 4) xywh normalised by the letterboxed side."""
    idx, cls, boxes = [], [], []
    for i, (t, (sx, sy)) in enumerate(zip(targets, scales)):
        b = t["boxes"].reshape(-1, 4).float() * torch.tensor([sx, sy, sx, sy])
        boxes.append(box_convert(b, "xyxy", "cxcywh") / side)
        idx.append(torch.full((len(b),), float(i)))
        cls.append(t["labels"].reshape(-1).float())
    return {"batch_idx": torch.cat(idx), "cls": torch.cat(cls).view(-1, 1), "bboxes": torch.cat(boxes)}


def loss(
    net: nn.Module,
    images: list[torch.Tensor],
    targets: list[dict],
    side: int,
    device,
    teacher: nn.Module | None = None,
    alpha: float = 0.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """The model's own training loss on one batch (a mean over its images); with a ``teacher`` and
    ``alpha`` > 0, (1 - alpha) * that + alpha * the distillation of the teacher's head outputs on the same
    letterboxed batch (``detect_distill.yolo_distill``)."""
    x, scales = letterbox([im.to(device, non_blocking=True) for im in images], side)
    batch = {k: v.to(device) for k, v in yolo_targets(targets, scales, side).items()}
    model: Any = net  # a DetectionModel (torch types a module's attributes as Tensor | Module)
    criterion = model.init_criterion()  # fresh: it holds the device the model is on now
    preds = net(x)
    total, _ = criterion(preds, batch)
    own = total.sum() / len(images)
    if teacher is None or alpha == 0:
        return own
    with torch.inference_mode():
        soft = [{k: b[k] for k in ("boxes", "scores")} for b in yolo_branches(teacher(x))]
    soft = [{k: v.clone() for k, v in b.items()} for b in soft]  # plain tensors autograd may save
    return (1 - alpha) * own + alpha * yolo_distill(yolo_branches(preds), soft, temperature)


@torch.no_grad()
def predict(model: nn.Module, images: list[torch.Tensor], side: int, device) -> list[dict]:
    """Boxes (xyxy in each image's pixels), scores and 0-based labels per image, after NMS."""
    x, scales = letterbox([im.to(device) for im in images], side)
    out = decoded(model(x)).transpose(1, 2)  # (N, anchors, 4 + classes)
    return [_nms(p, s, im.shape[-1], im.shape[-2]) for p, s, im in zip(out, scales, images)]


def _nms(p: torch.Tensor, scale: tuple[float, float], width: int, height: int) -> dict:
    """One image's detections as ultralytics' validator keeps them (every class above CONF per box)."""
    box, cls = box_convert(p[:, :4], "cxcywh", "xyxy"), p[:, 4:]
    i, j = (cls > CONF).nonzero().T
    scores = cls[i, j]
    if len(scores) > MAX_NMS:
        top = scores.topk(MAX_NMS).indices
        i, j, scores = i[top], j[top], scores[top]
    keep = batched_nms(box[i], scores, j, IOU)[:MAX_DET]
    sx, sy = scale
    found = box[i[keep]] / torch.tensor([sx, sy, sx, sy], device=p.device)
    found[:, 0::2] = found[:, 0::2].clamp(0, width)
    found[:, 1::2] = found[:, 1::2].clamp(0, height)
    return {"boxes": found.cpu(), "scores": scores[keep].cpu(), "labels": j[keep].cpu()}


@torch.no_grad()
def check_probe(model: nn.Module, name: str, side: int, num_classes: int) -> None:
    """The eval-mode forward gives (1, 4 + classes, anchors), as the task reads it."""
    was = model.training
    out = decoded(model.eval()(torch.zeros(1, 3, side, side)))
    model.train(was)
    if not (isinstance(out, torch.Tensor) and out.dim() == 3 and out.shape[1] == 4 + num_classes):
        raise UsageError(f"{name} does not predict (N, 4 + {num_classes}, anchors): not a YOLO Detect head")

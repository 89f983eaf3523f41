"""Distillation for detectors: the pruned copy learns the dense model's raw head outputs, anchor by anchor
(the two networks share anchors: the pruning keeps the head's prediction layers whole).

Classes: sigmoid heads (YOLO, RetinaNet, FCOS) by the binary KL of sigmoid(teacher / T) against
sigmoid(student / T) per class (BCE against the soft target minus that target's own entropy, so it is 0
when the student matches); SSD's softmax over background + classes by the KL of the softmaxes at T.
Boxes: YOLO's distribution-focal bins by the KL of the per-side softmaxes at T (a head with one bin, as
YOLO26's, and torchvision's box regressions by L1). The class and bin terms carry T^2, as
``train.distill_loss`` does, so their gradient's scale does not depend on T. Every anchor is weighted by
the teacher's confidence (its highest class probability), normalised by those weights' sum, so that the
many background anchors do not swamp the few that hold objects.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import RunError
from .raw_detector import head_outputs

EPS = 1e-9


def binary_kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """Elementwise KL(Bernoulli(sigmoid(teacher/t)) || Bernoulli(sigmoid(student/t)))."""
    s, q = student / t, teacher.float() / t
    p = torch.sigmoid(q)
    return p * (F.logsigmoid(q) - F.logsigmoid(s)) + (1 - p) * (F.logsigmoid(-q) - F.logsigmoid(-s))


def softmax_kl(student: torch.Tensor, teacher: torch.Tensor, t: float, dim: int) -> torch.Tensor:
    """KL(softmax(teacher/t) || softmax(student/t)) along ``dim`` (that dimension summed away)."""
    log_s = F.log_softmax(student / t, dim=dim)
    log_t = F.log_softmax(teacher.float() / t, dim=dim)
    return F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(dim)


def weighted(per_anchor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The teacher-confidence-weighted mean over anchors."""
    return (per_anchor * weight).sum() / weight.sum().clamp_min(EPS)


def yolo_branches(out) -> list[dict]:
    """The raw head dicts (``boxes`` (N, 4 * bins, anchors), ``scores`` (N, classes, anchors)) of a YOLO
    forward: the train-mode dict, or the eval-mode (decoded, raw) pair; both branches of an end-to-end
    head (one-to-many, one-to-one)."""
    raw = out[-1] if isinstance(out, (tuple, list)) else out
    if not isinstance(raw, dict):
        raise RunError(f"distillation: the YOLO head returned {type(raw).__name__}, not its raw dict")
    found = [raw[k] for k in ("one2many", "one2one") if k in raw] or [raw]
    if not all(isinstance(b, dict) and "boxes" in b and "scores" in b for b in found):
        raise RunError(f"distillation: the YOLO head's raw output has no boxes and scores ({sorted(raw)})")
    return found


def yolo_distill(student: list[dict], teacher: list[dict], t: float) -> torch.Tensor:
    """The distillation term of a YOLO batch from both heads' ``yolo_branches`` (their mean)."""
    pairs = zip(student, teacher, strict=True)
    return torch.stack(
        [_yolo_branch(s["boxes"], s["scores"], q["boxes"], q["scores"], t) for s, q in pairs]
    ).mean()


def _yolo_branch(
    boxes: torch.Tensor, scores: torch.Tensor, t_boxes: torch.Tensor, t_scores: torch.Tensor, t: float
) -> torch.Tensor:
    n, sides, anchors = boxes.shape
    bins = sides // 4
    weight = torch.sigmoid(t_scores.float()).amax(1)  # (N, anchors)
    cls = binary_kl(scores, t_scores, t).sum(1) * t * t
    if bins > 1:
        shape = (n, 4, bins, anchors)
        box = softmax_kl(boxes.view(shape), t_boxes.view(shape), t, dim=2).sum(1) * t * t
    else:
        box = (boxes - t_boxes.float()).abs().sum(1)
    return weighted(cls + box, weight)


def head_distill(student: dict, teacher: dict, t: float, background: bool) -> torch.Tensor:
    """The distillation term of a torchvision single-stage head's outputs (``cls_logits`` (N, anchors,
    classes), ``bbox_regression`` (N, anchors, 4)[, FCOS's ``bbox_ctrness`` (N, anchors, 1)]);
    ``background``: class 0 is the background of a softmax (SSD), else one sigmoid per class."""
    s, q = student["cls_logits"], teacher["cls_logits"].float()
    if background:
        weight = torch.softmax(q, -1)[..., 1:].amax(-1)
        cls = softmax_kl(s, q, t, dim=-1) * t * t
    else:
        weight = torch.sigmoid(q).amax(-1)
        cls = binary_kl(s, q, t).sum(-1) * t * t
    box = (student["bbox_regression"] - teacher["bbox_regression"].float()).abs().sum(-1)
    if "bbox_ctrness" in student:
        box = box + binary_kl(student["bbox_ctrness"], teacher["bbox_ctrness"], t).sum(-1) * t * t
    return weighted(cls + box, weight)


def distilled_losses(
    net: nn.Module, teacher: nn.Module, images: list, targets: list, t: float, background: bool
) -> tuple[dict, torch.Tensor]:
    """A torchvision single-stage detector's own loss dict on a batch, and the distillation of
    ``teacher``'s head outputs on the very batch the student's transform made (caught on its way into the
    student's backbone, so the teacher sees the same resized, normalised images)."""
    student: Any = net
    seen: dict = {}
    hooks = (
        student.backbone.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0])),
        student.head.register_forward_hook(lambda m, args, out: seen.setdefault("out", out)),
    )
    try:
        losses = net(images, targets)
    finally:
        for h in hooks:
            h.remove()
    with torch.inference_mode():
        soft = head_outputs(teacher, seen["x"])
    soft = {k: v.clone() for k, v in soft.items()}  # plain tensors autograd may save
    return losses, head_distill(seen["out"], soft, t, background)

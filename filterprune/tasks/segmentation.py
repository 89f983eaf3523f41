"""The segmentation task: one class per pixel (``masks:DIR`` folders) with torchvision's segmenters
(``tv:lraspp_mobilenet_v3_large``, ``tv:deeplabv3_mobilenet_v3_large``, ...), which return a dict.

The loss is per-pixel cross-entropy on ``out``, mask value 255 ignored, plus 0.5 times the same on ``aux``
where the model has that head (torchvision's reference recipe; the models filterprune builds have none
unless ``model_args`` asks for ``aux_loss``). Evaluation accumulates one confusion matrix over the split:
mIoU (the headline, choosing the kept epoch) over the classes present in the truth or the prediction, and
pixel accuracy. Finetuning distills the dense model's ``out`` logits per pixel (Hinton et al.'s KL at
temperature T, averaged over the pixels that are not ignored). The ONNX file is the model returning
``out`` alone, one (N, classes, S, S) tensor. Images are normalised with ImageNet's mean/std before the
model (torchvision's segmenters, unlike its detectors, do not normalise inside): ``input_range`` None.
Only criteria that need no classification batches prune segmenters (taylor: by the per-pixel loss on
training batches).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import distributed, limits
from ..data.segmentation import IGNORE
from ..errors import UsageError
from ..log import say
from ..models import MAX_IMAGE_SIZE, ModelSpec
from ..models.refs import model_ref
from ..models.torchvision_models import is_segmenter, segmenter_names
from ..options import json_object
from .base import Step, Task
from .segmentation_data import SegmentationSource

EVAL_BATCH = 8
AUX_WEIGHT = 0.5  # torchvision's reference: out + 0.5 * aux
MIN_SIDE = 32


class OutOnly(nn.Module):
    """A segmenter returning its ``out`` logits as one tensor: what is exported and timed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def pixel_loss(outputs: dict, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the pixels whose mask is not ``IGNORE`` (``aux`` weighted ``AUX_WEIGHT``); 0
    with a gradient where every pixel is ignored (cross-entropy's mean over none would be NaN)."""
    if not (y != IGNORE).any():
        return outputs["out"].sum() * 0
    loss = F.cross_entropy(outputs["out"], y, ignore_index=IGNORE)
    if "aux" in outputs:
        loss = loss + AUX_WEIGHT * F.cross_entropy(outputs["aux"], y, ignore_index=IGNORE)
    return loss


def pixel_kl(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor, t: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)) per pixel, averaged over the pixels whose mask is
    not ``IGNORE`` (the T^2 keeps the gradient's scale independent of T)."""
    log_s, log_t = F.log_softmax(student / t, dim=1), F.log_softmax(teacher.float() / t, dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1)
    keep = y != IGNORE
    return t * t * (kl[keep].mean() if keep.any() else kl.sum() * 0)


def confusion(y: torch.Tensor, pred: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n) int64 counts of (true class, predicted class) over the pixels whose mask is not ``IGNORE``."""
    keep = y != IGNORE
    return torch.bincount(n * y[keep] + pred[keep], minlength=n * n).reshape(n, n).cpu()


def scores(matrix: np.ndarray) -> dict[str, float]:
    """mIoU over the classes present in the truth or the prediction (a class absent from both is no
    evidence either way) and pixel accuracy, from a confusion matrix (rows: truth); 0 with no pixel."""
    m = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(m)
    union = m.sum(0) + m.sum(1) - hits
    present = union > 0
    total = m.sum()
    return {
        "miou": float((hits[present] / union[present]).mean()) if present.any() else 0.0,
        "pixel_acc": float(hits.sum() / total) if total else 0.0,
    }


class Segmentation(Task):
    name = "segmentation"
    headline = "miou"
    metrics = {"miou": "mIoU", "pixel_acc": "pixel accuracy"}
    output_name = "out"
    input_range = None  # normalised images, N(0, 1): the segmenters do not normalise inside

    def check_model_name(self, name: str) -> None:
        if not is_segmenter(name):
            raise UsageError(
                f"task segmentation takes a torchvision segmenter (tv:{', tv:'.join(segmenter_names())}), "
                f"not {limits.printable(name, 200)}",
                ("task",),
            )

    def check_config(self, cfg) -> None:
        """What this task does not do (yet), refused before anything is built."""
        size = cfg.data.image_size
        why = self.criterion_refused(cfg.prune.criterion) or (
            "weights: segmenters start from a random init (or checkpoint: a local state dict)"
            if cfg.model.weights is not None
            else f"image_size {size}: the letterbox side must be {MIN_SIDE} to {MAX_IMAGE_SIZE} pixels"
            if size is not None and not MIN_SIDE <= size <= MAX_IMAGE_SIZE
            else "precision int8 and distributed training are classification-only for now"
            if "int8" in cfg.bench.precision or cfg.train.distributed
            else None
        )
        if why:
            raise UsageError(f"task segmentation: {why}", ("task",))

    def can_distill(self, model_name: str) -> bool:
        return True

    def prepare(self, cfg, given):
        if given is not None:
            raise UsageError("task segmentation takes a model name and a dataset, not objects in hand")
        m, d = cfg.model, cfg.data
        data = SegmentationSource.load(d.dataset, d.val_fraction, cfg.train.seed, d.image_size)
        batch = min(cfg.train.batch_size, len(data.y_train))
        if batch < 2 and model_ref(m.name).startswith("tv:deeplabv3"):
            raise UsageError(
                f"task segmentation: {m.name}'s image-pooling branch normalises a 1x1 map over the batch, "
                f"so it trains on batches of 2 or more images (batch_size {cfg.train.batch_size}, "
                f"{len(data.y_train)} training image(s))",
                ("batch_size",),
            )
        say(f"data: {data.describe()}" + ("" if d.image_size else " (--image-size to choose)"))
        spec = ModelSpec(
            model_ref(m.name), data.num_classes, 3, data.image_size, json_object(m.model_args), None
        )
        return data, spec, {"image_size": data.image_size}

    @torch.no_grad()
    def check_probe(self, model: nn.Module, spec, ignore_layers=()) -> None:
        was = model.training
        out = model.eval()(torch.randn(1, 3, spec.image_size, spec.image_size))
        model.train(was)
        want = (1, spec.num_classes, spec.image_size, spec.image_size)
        if not (
            isinstance(out, dict) and isinstance(out.get("out"), torch.Tensor) and out["out"].shape == want
        ):
            raise UsageError(f"{spec.name} does not return 'out' logits of shape {want}: not a segmenter")

    def step(self, net: nn.Module, teacher: nn.Module | None, batch, device, alpha: float, cfg) -> Step:
        """Per-pixel cross-entropy; with a ``teacher`` and ``alpha`` > 0, (1 - alpha) * that + alpha * the
        per-pixel distillation of the teacher's ``out`` (at ``cfg.distill_temperature``)."""
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = net(x)
        loss = pixel_loss(out, y)
        if teacher is not None and alpha > 0:
            with torch.inference_mode():
                soft = teacher(x)["out"]
            kl = pixel_kl(out["out"], soft.clone(), y, cfg.distill_temperature)
            loss = (1 - alpha) * loss + alpha * kl
        return Step(loss, len(x))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data, device, split: str = "test") -> dict | None:
        if not distributed.is_main():
            return None
        model.to(device).eval()
        n = data.num_classes
        matrix = torch.zeros(n, n, dtype=torch.int64)
        for x, y in data.make_loader(split, EVAL_BATCH, shuffle=False):
            pred = model(x.to(device))["out"].argmax(1)
            matrix += confusion(y.to(device), pred, n)
        return scores(matrix.numpy())

    def deployable(self, model: nn.Module) -> nn.Module | None:
        return OutOnly(model)

"""The classification task: one label per image, cross-entropy (distilled from the dense model's logits
with Hinton et al.'s loss), top-1/top-5 accuracy, the logits exported as they are."""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import inputs, limits
from .. import train as training  # its distill_loss and evaluate, looked up when called
from ..errors import UsageError
from ..models.torchvision_models import is_detector, is_segmenter
from ..models.yolo import is_yolo
from .base import Step, Task


class Classification(Task):
    """One class label per image (the default task)."""

    name = "classification"
    headline = "top1"
    metrics = {"top1": "top-1", "top5": "top-5"}
    output_name = "logits"

    def check_model_name(self, name: str) -> None:
        if is_detector(name):
            raise UsageError(
                f"{name} is a torchvision detector; classification takes classifiers: pass task detection",
                ("task",),
            )
        if is_segmenter(name):
            raise UsageError(
                f"{name} is a torchvision segmenter; classification takes classifiers: "
                "pass task segmentation",
                ("task",),
            )
        if is_yolo(name):
            raise UsageError(
                f"{limits.printable(name, 200)} is an ultralytics YOLO detector; classification takes "
                "classifiers: pass task detection",
                ("task",),
            )

    def can_distill(self, model_name: str) -> bool:
        return True

    def prepare(self, cfg, given):
        return inputs.prepare(cfg, given)

    def check_probe(self, model: nn.Module, spec, ignore_layers=()) -> None:
        inputs.check_probe(model, spec, ignore_layers)

    def step(self, net: nn.Module, teacher: nn.Module | None, batch, device, alpha: float, cfg) -> Step:
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = net(x)
        with torch.inference_mode():
            soft = teacher(x) if teacher is not None else None
        loss = training.distill_loss(
            out,
            soft.clone() if soft is not None else None,
            y,
            alpha,
            cfg.distill_temperature,
            cfg.label_smoothing,
        )
        return Step(loss, len(y), (out.argmax(1) == y).sum())

    def calibration(self, data, device, cfg):
        """None: taylor's own cross-entropy on ``(images, labels)`` batches serves."""
        return None

    def evaluate(self, model: nn.Module, data, device, split: str = "test") -> dict | None:
        return training.evaluate(model, data, device, split=split)

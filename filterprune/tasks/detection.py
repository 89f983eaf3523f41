"""The detection task: boxes per image (``coco:DIR`` / ``yolo:DIR`` folders) with torchvision's detectors
and ultralytics YOLO (``yolo:yolov8n.yaml``; its letterboxing, loss and NMS in ``tasks/yolo.py``).

The loss is the detector's own (its loss dict in train mode, summed); evaluation is mAP@0.5:0.95 (the
headline, which chooses the kept epoch on the validation images) and mAP@0.5 by pycocotools; the ONNX file
is the network without post-processing (``raw_detector.py``). Finetuning distills the dense model's raw
head outputs into the pruned one (``detect_distill.py``) for YOLO and the single-stage torchvision
detectors; the two-stage R-CNNs learn from the boxes alone (their second stage's inputs depend on the
first stage's proposals, which differ between the two models). Only criteria that need no classification
batches prune detectors.
Detectors where class 0 is the background (R-CNNs, SSD) are trained on labels + 1 and their predictions
shifted back, so every metric and file speaks the dataset's 0-based classes (YOLO has no background).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .. import distributed, limits
from ..errors import UsageError
from ..log import say
from ..models import ModelSpec, build_model
from ..models import yolo as yolo_models
from ..models.refs import model_ref
from ..models.torchvision_models import (
    background,
    detector_input,
    detector_names,
    is_detector,
    is_segmenter,
)
from ..options import json_object
from . import yolo
from .base import Step, Task
from .coco_eval import coco_map
from .detect_distill import distilled_losses
from .detection_data import DetectionSource
from .raw_detector import raw_detector

EVAL_BATCH = 8


def offset(model: nn.Module) -> int:
    """1 where the detector's class 0 is the background, else 0."""
    return 0 if yolo_models.is_yolo_module(model) else background(type(model).__name__.lower())


class Detection(Task):
    name = "detection"
    headline = "map"
    metrics = {"map": "mAP@0.5:0.95", "map50": "mAP@0.5"}
    output_name = "raw"
    input_range = (0.0, 1.0)  # images as the detectors take them: pixels scaled to [0, 1], not normalised
    image_size: int | None = None  # a YOLO model's input side (set by ``prepare``)

    def check_model_name(self, name: str) -> None:
        if not (is_detector(name) or yolo_models.is_yolo(name)):
            hint = " (a segmenter: pass task segmentation)" if is_segmenter(name) else ""
            raise UsageError(
                f"task detection takes a torchvision detector (tv:{', tv:'.join(detector_names())}) or an "
                f"ultralytics YOLO (yolo:yolov8n.yaml), not {limits.printable(name, 200)}{hint}",
                ("task",),
            )

    def check_config(self, cfg) -> None:
        """What this task does not do (yet), refused before anything is built."""
        why = self.criterion_refused(cfg.prune.criterion) or (
            "weights: detectors start from a random init (or checkpoint: a local state dict)"
            if cfg.model.weights is not None
            else "image_size: a torchvision detector resizes its images itself"
            if cfg.data.image_size is not None and not yolo_models.is_yolo(cfg.model.name)
            else "precision int8 and distributed training are classification-only for now"
            if "int8" in cfg.bench.precision or cfg.train.distributed
            else None
        )
        if why:
            raise UsageError(f"task detection: {why}", ("task",))
        if cfg.output.export and not _single_stage(cfg.model.name):
            raise UsageError(
                f"task detection: {cfg.model.name} is a two-stage detector, which has no network without "
                "post-processing to export; pass export=False (--no-export)",
                ("export",),
            )

    def can_distill(self, model_name: str) -> bool:
        return _single_stage(model_name)

    def prepare(self, cfg, given):
        if given is not None:
            raise UsageError("task detection takes a model name and a dataset, not objects in hand")
        m = cfg.model
        data = DetectionSource.load(cfg.data.dataset, cfg.data.val_fraction, cfg.train.seed)
        say(f"data: {data.describe()}")
        spec = ModelSpec(model_ref(m.name), data.num_classes, 3, 1, json_object(m.model_args), None)
        model = build_model(spec)
        data.image_size = (
            self._choose_side(model, data, cfg.data.image_size)
            if yolo_models.is_yolo(spec.name)
            else detector_input(model)
        )
        spec = ModelSpec(spec.name, spec.num_classes, 3, data.image_size, spec.args, None)
        return data, spec, {"image_size": data.image_size}

    def _choose_side(self, model: nn.Module, data: DetectionSource, asked: int | None) -> int:
        """The side YOLO images are letterboxed to: as asked (a stride multiple), else the images' own."""
        stride = yolo_models.max_stride(model)
        if asked is not None:
            yolo.check_side(asked, stride)
        self.image_size = asked or yolo.default_side(
            [(s.width, s.height) for s in data.y_train + (data.y_val or [])], stride
        )
        say(
            f"yolo: images letterboxed to {self.image_size}x{self.image_size}"
            + ("" if asked else " (--image-size to choose)")
        )
        return self.image_size

    @torch.no_grad()
    def check_probe(self, model: nn.Module, spec, ignore_layers=()) -> None:
        if yolo_models.is_yolo_module(model):
            return yolo.check_probe(model, spec.name, spec.image_size, spec.num_classes)
        was = model.training
        out = model.eval()([torch.rand(3, spec.image_size, spec.image_size)])
        model.train(was)
        if not (isinstance(out, list) and isinstance(out[0], dict) and "boxes" in out[0]):
            raise UsageError(f"{spec.name} does not return boxes per image: not a torchvision detector")

    def step(self, net: nn.Module, teacher: nn.Module | None, batch, device, alpha: float, cfg) -> Step:
        """The detector's own loss; with a ``teacher`` and ``alpha`` > 0, (1 - alpha) * that + alpha *
        the distillation of the teacher's head outputs (at ``cfg.distill_temperature``)."""
        images, targets = batch
        teacher = teacher if alpha > 0 else None
        temperature = cfg.distill_temperature if teacher is not None else 1.0
        if yolo_models.is_yolo_module(net):
            side = self._side(net, images)
            return Step(
                yolo.loss(net, images, targets, side, device, teacher, alpha, temperature), len(images)
            )
        shift = offset(net)
        images = [x.to(device, non_blocking=True) for x in images]
        targets = [
            {"boxes": t["boxes"].to(device), "labels": (t["labels"] + shift).to(device)} for t in targets
        ]
        if teacher is None:
            return Step(sum(net(images, targets).values()), len(images))
        losses, soft = distilled_losses(net, teacher, images, targets, temperature, background=shift == 1)
        return Step((1 - alpha) * sum(losses.values()) + alpha * soft, len(images))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, data, device, split: str = "test") -> dict | None:
        if not distributed.is_main():
            return None
        model.to(device).eval()
        shift = offset(model)
        targets, predictions, sizes = [], [], []
        for images, found in data.make_loader(split, EVAL_BATCH, shuffle=False):
            for x, t, p in zip(images, found, self._predict(model, images, data, device)):
                targets.append({k: v.numpy() for k, v in t.items()})
                predictions.append(
                    {
                        "boxes": p["boxes"].cpu().numpy(),
                        "scores": p["scores"].cpu().numpy(),
                        "labels": (p["labels"] - shift).cpu().numpy(),
                    }
                )
                sizes.append((x.shape[-1], x.shape[-2]))
        return coco_map(targets, predictions, sizes, data.num_classes)

    def _predict(self, model: nn.Module, images: list, data, device) -> list[dict]:
        """Detections per image in its own pixels (torchvision's models post-process themselves)."""
        if yolo_models.is_yolo_module(model):
            return yolo.predict(model, images, self._side(model, images, data.image_size), device)
        return model([x.to(device) for x in images])

    def _side(self, model: nn.Module, images: list, known: int | None = None) -> int:
        """A YOLO model's input side: the run's (``prepare``), else one that fits these images."""
        sizes = [(im.shape[-1], im.shape[-2]) for im in images]
        return known or self.image_size or yolo.default_side(sizes, yolo_models.max_stride(model))

    def deployable(self, model: nn.Module) -> nn.Module | None:
        return yolo.YoloRaw(model) if yolo_models.is_yolo_module(model) else raw_detector(model)


def _single_stage(name: str) -> bool:
    """Whether the detector ``name`` is single-stage (YOLO's included): it has a network without
    post-processing to export, and raw head outputs to distill."""
    return not (name.startswith("tv:") and name[3:].startswith(("fasterrcnn", "maskrcnn", "keypointrcnn")))

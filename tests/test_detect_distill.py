"""Distillation for detectors: the head-output distillation term is 0 where the student gives the teacher's
outputs and positive, with gradients, where it does not; confident anchors weigh more than background; a
YOLO and an SSDlite training step with a teacher differ from one without; and ``compress --distill anneal``
of a YOLO finetunes through the teacher and records it."""

import copy
import json

import pytest
import torch
import torch.nn as nn
from conftest import pasted_detection_set

from filterprune.cli import main
from filterprune.tasks import detect_distill, make_task, yolo
from filterprune.tasks.detection_data import DetectionSource
from filterprune.train import TrainConfig

V8 = "yolo:yolov8n.yaml"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pasted(tmp_path_factory):
    return pasted_detection_set(tmp_path_factory, "yolo")


def _yolo(name="yolov8n.yaml", classes=3, side=64):
    pytest.importorskip("ultralytics")
    from filterprune.models.yolo import yolo_model  # reason: needs the optional ultralytics

    torch.manual_seed(0)
    return yolo_model(name, classes, 3, side)


def _frozen_bn(model: nn.Module) -> nn.Module:
    """Training mode (the train-mode outputs) with BatchNorm's running statistics, as the teacher's eval."""
    model.train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


# ------------------------------------------------------------------------------------------ the loss terms
@pytest.mark.parametrize("name", ["yolov8n.yaml", "yolo26n.yaml"], ids=["v8-dfl", "26-end2end-one-bin"])
def test_yolo_distill_is_zero_on_the_teachers_outputs_and_positive_with_gradients_otherwise(name):
    model = _yolo(name)
    x = torch.rand(2, 3, 64, 64)
    teacher = copy.deepcopy(model).eval()
    student = _frozen_bn(model)
    with torch.no_grad():
        soft = detect_distill.yolo_branches(teacher(x))
    assert len(soft) == (2 if "26" in name else 1)  # an end-to-end head: both branches
    same = detect_distill.yolo_distill(detect_distill.yolo_branches(student(x)), soft, 4.0)
    assert abs(same.item()) < 1e-5
    with torch.no_grad():
        for p in student.model[-1].parameters():
            p.add_(0.1 * torch.randn_like(p))
    diff = detect_distill.yolo_distill(detect_distill.yolo_branches(student(x)), soft, 4.0)
    diff.backward()
    head = student.model[-1]
    assert diff.item() > 0 and head.cv2[0][2].weight.grad.abs().sum() > 0
    assert head.cv3[0][2].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("background", [True, False], ids=["softmax-ssd", "sigmoid-fcos"])
def test_head_distill_is_zero_for_equal_heads_and_confident_anchors_weigh_more(background):
    torch.manual_seed(0)
    q = {"cls_logits": torch.full((1, 2, 4), -6.0), "bbox_regression": torch.zeros(1, 2, 4)}
    q["cls_logits"][0, 0, 2] = 6.0  # anchor 0: the teacher is sure of a class; anchor 1: background
    q["cls_logits"][0, 1, 0] = 6.0 if background else -6.0  # SSD's class 0 is the background
    if not background:
        q["bbox_ctrness"] = torch.zeros(1, 2, 1)
    s = {k: v.clone().requires_grad_() for k, v in q.items()}
    assert detect_distill.head_distill(s, q, 2.0, background).item() == pytest.approx(0.0, abs=1e-6)

    def off(anchor):
        moved = {k: v.detach().clone() for k, v in q.items()}
        moved["bbox_regression"][0, anchor] += 1.0
        moved["cls_logits"][0, anchor] += torch.tensor([1.0, -1.0, 0.5, 0.0])
        return {k: v.requires_grad_() for k, v in moved.items()}

    sure, unsure = off(0), off(1)
    loss = detect_distill.head_distill(sure, q, 2.0, background)
    loss.backward()
    assert loss.item() > 10 * detect_distill.head_distill(unsure, q, 2.0, background).item() > 0
    assert sure["cls_logits"].grad.abs().sum() > 0 and sure["bbox_regression"].grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- training steps
def test_a_yolo_step_with_a_teacher_differs_from_one_without_and_the_teacher_gets_no_gradient(pasted):
    data = DetectionSource.load(f"yolo:{pasted}", 0.25, seed=0)
    model = _yolo(classes=data.num_classes)
    batch = next(iter(data.make_loader("train", 3, augment=False)))
    task, cfg = make_task("detection"), TrainConfig(distill_temperature=4.0)
    task.image_size = 64
    teacher = copy.deepcopy(model).eval()
    student = _frozen_bn(model)
    plain = task.step(student, teacher, batch, CPU, 0.0, cfg).loss
    assert task.step(student, None, batch, CPU, 0.5, cfg).loss.item() == pytest.approx(plain.item())
    mixed = task.step(student, teacher, batch, CPU, 0.5, cfg).loss
    assert mixed.item() == pytest.approx(0.5 * plain.item(), rel=1e-4)  # the same outputs: D is 0
    with torch.no_grad():
        student.model[-1].cv3[0][2].bias.add_(1.0)
    moved = task.step(student, teacher, batch, CPU, 1.0, cfg).loss
    moved.backward()
    assert moved.item() > 0 and student.model[-1].cv3[0][2].bias.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_an_ssdlite_step_distills_the_head_on_the_batch_its_transform_made():
    from torchvision.models.detection import ssdlite320_mobilenet_v3_large  # reason: a heavy import

    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=4)
    teacher = copy.deepcopy(model).eval()
    student = _frozen_bn(model)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 80)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[5.0, 20.0, 40.0, 70.0]]), "labels": torch.tensor([0])},
    ]
    task, cfg = make_task("detection"), TrainConfig(distill_temperature=4.0)
    plain = task.step(student, None, (images, targets), CPU, 0.0, cfg).loss
    same = task.step(student, teacher, (images, targets), CPU, 0.5, cfg).loss
    assert same.item() == pytest.approx(0.5 * plain.item(), rel=1e-4)  # the teacher saw the same batch
    with torch.no_grad():
        for p in student.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    moved = task.step(student, teacher, (images, targets), CPU, 1.0, cfg).loss
    assert moved.item() > 0


# ------------------------------------------------------------------------------------------ through compress
def test_compress_with_distill_anneal_finetunes_a_yolo_from_the_dense_heads(pasted, tmp_path, monkeypatch):
    _yolo()
    calls = []
    real = yolo.yolo_distill
    monkeypatch.setattr(yolo, "yolo_distill", lambda *a: calls.append(a) or real(*a))
    out = tmp_path / "run"
    argv = [V8, "--task", "detection", "--dataset", f"yolo:{pasted}", "--image-size", "64", "--epochs", "1"]
    argv += [
        "--finetune-epochs",
        "1",
        "--batch-size",
        "4",
        "--no-export",
        "--no-bench",
        "--distill",
        "anneal",
    ]
    assert main(["compress", *argv, "--criterion", "l1", "--sparsity", "0.3", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["finetune"]["distill"] == "anneal" and calls  # the baseline trains without a teacher
    assert make_task("detection").can_distill(V8) and make_task("detection").can_distill(
        "tv:fcos_resnet50_fpn"
    )
    assert not make_task("detection").can_distill("tv:fasterrcnn_mobilenet_v3_large_320_fpn")

"""Tasks as plug-ins: the registry, classification behind the interface (the loss it always had), the
detection task's loss, mAP and export on a tiny pasted set, and the task/model/dataset mismatches refused
in one line before anything is written."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_compress_refused, pasted_detection_set

from filterprune import pipeline, stages
from filterprune.catalog import TASKS
from filterprune.cli import main
from filterprune.config import CompressConfig, check_task
from filterprune.errors import UsageError
from filterprune.exporting.convert import check_parity, export_onnx
from filterprune.models.torchvision_models import detector
from filterprune.pruning.shrink import PruneResult
from filterprune.reporting.schema import SCHEMA_VERSION
from filterprune.tasks import make_task
from filterprune.tasks.coco_eval import coco_map
from filterprune.tasks.detection_data import DetectionSource
from filterprune.tasks.raw_detector import raw_detector
from filterprune.train import TrainConfig, distill_loss

SSD = "tv:ssdlite320_mobilenet_v3_large"


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return pasted_detection_set(tmp_path_factory, "coco")


def _one_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("filterprune: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------ the registry
def test_tasks_are_registered_by_name_and_an_unknown_one_is_refused():
    assert {"classification", "detection"} <= set(TASKS.names())
    assert make_task("detection").headline == "map" and make_task("classification").headline == "top1"
    with pytest.raises(
        UsageError, match="unknown task 'keypoints'; valid: classification, detection, segmentation"
    ):
        make_task("keypoints")
    with pytest.raises(UsageError, match="unknown task"):
        CompressConfig.of(model="resnet20", criterion="l1", task="keypoints").validate()


def test_classification_step_is_the_distillation_loss_it_always_was():
    torch.manual_seed(0)
    net, teacher = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    cfg = TrainConfig(distill_temperature=3.0, label_smoothing=0.1)
    step = make_task("classification").step(net, teacher, (x, y), torch.device("cpu"), 0.4, cfg)
    want = distill_loss(net(x), teacher(x).detach(), y, 0.4, 3.0, 0.1)
    assert torch.equal(step.loss, want) and step.examples == 5
    assert step.correct.item() == (net(x).argmax(1) == y).sum().item()


# ------------------------------------------------------------------------------------------------ mAP
def _truth():
    return [
        {"boxes": np.array([[10, 10, 50, 60], [70, 20, 100, 90]], float), "labels": np.array([0, 1])},
        {"boxes": np.array([[5, 5, 40, 40]], float), "labels": np.array([2])},
    ]


def _as_predicted(truth, shift=0.0):
    return [
        {
            "boxes": t["boxes"] + shift,
            "scores": np.linspace(0.9, 0.5, len(t["labels"])),
            "labels": t["labels"],
        }
        for t in truth
    ]


def test_map_of_perfect_predictions_is_one_and_of_shifted_boxes_lower():
    truth, sizes = _truth(), [(128, 128), (128, 128)]
    perfect = coco_map(truth, _as_predicted(truth), sizes, 3)
    assert perfect["map"] == pytest.approx(1.0) and perfect["map50"] == pytest.approx(1.0)
    shifted = coco_map(truth, _as_predicted(truth, 8.0), sizes, 3)
    assert shifted["map"] < 0.5 and shifted["map50"] < 1.0
    wrong_class = [{**p, "labels": (p["labels"] + 1) % 3} for p in _as_predicted(truth)]
    assert coco_map(truth, wrong_class, sizes, 3)["map"] == 0.0
    nothing = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}] * 2
    assert coco_map(truth, nothing, sizes, 3) == {"map": 0.0, "map50": 0.0, "images": 2}


# --------------------------------------------------------------------------------- detection on a tiny set
def test_detection_loss_and_evaluation_on_a_tiny_set(coco):
    data = DetectionSource.load(f"coco:{coco}", 0.25, seed=0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (6, 2, 4)
    task, model = make_task("detection"), detector("ssdlite320_mobilenet_v3_large", 10, 3)
    assert model.head.classification_head.num_columns == 11  # 10 classes + the background
    torch.manual_seed(0)
    images, targets = next(iter(data.make_loader("train", 2, augment=True)))
    step = task.step(model.train(), None, (images, targets), torch.device("cpu"), 0.0, None)
    assert step.examples == 2 and step.correct is None and torch.isfinite(step.loss)
    step.loss.backward()
    assert all(p.grad is not None for p in model.head.parameters())
    metrics = task.evaluate(model, data, torch.device("cpu"), split="val")
    assert set(metrics) == {"map", "map50", "images"} and metrics["images"] == 2
    assert 0.0 <= metrics["map"] <= metrics["map50"] <= 1.0


def test_training_flips_boxes_with_their_images(coco):
    data = DetectionSource.load(f"coco:{coco}", 0.0, seed=0)
    plain = next(iter(data.make_loader("train", 8, shuffle=False)))
    torch.manual_seed(3)
    flipped = next(iter(data.make_loader("train", 8, augment=True, shuffle=False)))
    changed = 0
    for x, t, fx, ft in zip(*plain, *flipped):
        if not torch.equal(x, fx):
            changed += 1
            assert torch.equal(fx, x.flip(-1))
            w = x.shape[-1]
            assert torch.allclose(ft["boxes"][:, [0, 2]], w - t["boxes"][:, [2, 0]])
    assert 0 < changed < 8


@pytest.mark.slow  # ONNX export of a detector: ~20 s
def test_a_single_stage_detector_exports_its_raw_head_with_parity(tmp_path):
    model = detector("ssdlite320_mobilenet_v3_large", 10, 3).eval()
    raw = raw_detector(model)
    out = raw(torch.rand(2, 3, 320, 320))
    assert out.shape[0] == 2 and out.shape[-1] == 4 + 11
    path = export_onnx(raw, tmp_path / "m.onnx", (3, 320, 320), outputs=("raw",))
    assert check_parity(raw, path, (3, 320, 320))["max_rel_diff"] < 1e-4
    assert raw_detector(detector("fasterrcnn_mobilenet_v3_large_320_fpn", 10, 3)) is None  # two-stage


# ----------------------------------------------------------------------------------------- bad input
def test_the_dataset_must_serve_the_task():
    check_task("cifar10", "classification")
    check_task("coco:x", "detection")
    with pytest.raises(
        UsageError, match=r"coco: is a detection set .*classification needs .*pass task detection"
    ):
        check_task("coco:x", "classification")
    with pytest.raises(
        UsageError, match=r"cifar10 is a classification set .*detection needs boxes per image"
    ):
        check_task("cifar10", "detection")
    with pytest.raises(UsageError, match=r"task detection needs a dataset: boxes per image"):
        check_task(None, "detection")


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (
            [SSD],
            r"tv:ssdlite320_mobilenet_v3_large is a torchvision detector; classification takes "
            r"classifiers: pass --task detection",
        ),
        (
            ["resnet20", "--task", "detection"],
            r"--task detection takes a torchvision detector .*not resnet20",
        ),
        ([SSD, "--task", "detection", "--dataset", "cifar10"], r"cifar10 is a classification set"),
        (
            [SSD, "--task", "detection", "--criterion", "greedy"],
            r"criterion greedy scores channels on "
            r"classification batches; --task detection prunes with l1, magnitude, slimming, taylor, random",
        ),
        (
            ["tv:fasterrcnn_mobilenet_v3_large_320_fpn", "--task", "detection"],
            r"two-stage detector.*--no-export",
        ),
        (
            [SSD, "--task", "detection", "--image-size", "200"],
            r"a torchvision detector resizes its images itself",
        ),
    ],
    ids=["detector-classification", "classifier-detection", "dataset", "criterion", "two-stage", "size"],
)
def test_a_task_mismatch_is_one_line_exit_2_and_nothing_written(coco, tmp_path, capfd, argv, pattern):
    assert_compress_refused(argv, f"coco:{coco}" if "--task" in argv else "cifar10", tmp_path, capfd, pattern)


def test_train_command_refuses_a_detector(capfd, tmp_path):
    assert main(["train", SSD, "--out", str(tmp_path / "o")]) == 2
    assert "is a torchvision detector" in _one_line(capfd)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------ end to end
def _compress(coco, out):
    cfg = CompressConfig.of(
        model=SSD,
        task="detection",
        dataset=f"coco:{coco}",
        criterion="l1",
        sparsity=0.3,
        epochs=1,
        finetune_epochs=1,
        batch_size=4,
        out=str(out),
        bench_batch_sizes=(1,),
        bench_iters=2,
    )
    return pipeline.run(cfg)


@pytest.mark.slow  # trains a detector for two epochs on CPU: minutes
def test_compress_a_detector_end_to_end_with_pruning_stubbed(coco, tmp_path, monkeypatch):
    """The task's path through every stage; the pruner of detectors' outputs comes with the "any output"
    work, so here it removes nothing (the stub stands for it)."""
    monkeypatch.setattr(stages, "prune_in_steps", lambda *a, **k: PruneResult([], [], [], 0.0, {}, {}, None))
    done = _compress(coco, tmp_path / "run")
    r = json.loads((tmp_path / "run" / "report.json").read_text())
    assert (
        r["schema_version"] == SCHEMA_VERSION
        and r["task"] == "detection"
        and r["finetune"]["distill"] == "off"
    )
    assert r["metrics"]["names"] == {"map": "mAP@0.5:0.95", "map50": "mAP@0.5"}
    assert r["dense"]["accuracy"] == r["metrics"]["dense"]["map"] == done.dense_accuracy
    assert "val_map" in r["finetune"]["history"][0] and r["finetune"]["kept_epoch"] == 1
    assert r["onnx"]["max_rel_diff"] < 1e-4 and r["deployed"] is None
    assert "| mAP@0.5:0.95 | mAP@0.5 |" in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.slow
def test_compress_prunes_a_detector(coco, tmp_path):
    done = _compress(coco, tmp_path / "run")
    assert done.theoretical_speedup > 1.1

"""The segmentation task: the pasted set written as masks (reproducible, the boxes painted), the masks:DIR
reader and its refusals, mIoU from a confusion matrix, the per-pixel loss and distillation, the ONNX file
of ``out``, and a tiny compress run end to end."""

import json
import re
import shutil

import numpy as np
import onnx
import pytest
import torch
from conftest import SHARED_DATA, assert_compress_refused
from PIL import Image

from filterprune.catalog import TASKS
from filterprune.cli import main
from filterprune.data.pasted import make_detection_set
from filterprune.data.segmentation import IGNORE, masks, paint
from filterprune.errors import UsageError
from filterprune.exporting.convert import check_parity, export_onnx
from filterprune.models.torchvision_models import segmenter
from filterprune.tasks import make_task
from filterprune.tasks.segmentation import OutOnly, confusion, pixel_loss, scores
from filterprune.tasks.segmentation_data import MEAN, STD, SegmentationSource, letterbox
from filterprune.train import TrainConfig

LRASPP = "tv:lraspp_mobilenet_v3_large"
SIDE = 64
CPU = torch.device("cpu")


def _make(out, layout="masks", seed=1, train=6, test=3):
    source = SHARED_DATA / "cifar10_mini.npz"
    if not source.is_file():
        pytest.skip(f"real data not found at {source}")
    return make_detection_set(out, layout, train=train, test=test, seed=seed, source=source)


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    return _make(tmp_path_factory.mktemp("s") / "masks")


@pytest.fixture
def one_thread():
    """One torch thread: on a CPU other processes keep busy, two threads contend and a step takes 100x
    longer (this run's time, not its results, depends on it)."""
    was = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(was)


def _one_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("filterprune: error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------------------------------- the metric
def test_miou_of_a_perfect_prediction_is_one_and_of_a_known_partial_one_its_value():
    y = torch.tensor([[0, 0, 1, 1, IGNORE]])
    assert scores(confusion(y, torch.tensor([[0, 0, 1, 1, 2]]), 3).numpy()) == {"miou": 1.0, "pixel_acc": 1.0}
    # class 0: 1 hit of a union of 2; class 1: 2 of 3; class 2 in neither truth nor prediction: left out;
    # the ignored pixel's prediction (2) counts for nothing
    got = scores(confusion(y, torch.tensor([[0, 1, 1, 1, 2]]), 3).numpy())
    assert got["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2) and got["pixel_acc"] == pytest.approx(3 / 4)
    # a class predicted but absent from the truth counts, with IoU 0
    got = scores(confusion(y, torch.tensor([[2, 0, 1, 1, 0]]), 3).numpy())
    assert got["miou"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert scores(np.zeros((3, 3))) == {"miou": 0.0, "pixel_acc": 0.0}


def test_pixel_loss_ignores_255_and_a_fully_ignored_batch_is_zero_not_nan():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    y = torch.tensor([[[0, 1], [IGNORE, 2]]])
    want = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[y != IGNORE], y[y != IGNORE])
    assert torch.allclose(pixel_loss({"out": logits}, y), want)
    with_aux = pixel_loss({"out": logits, "aux": logits}, y)
    assert torch.allclose(with_aux, 1.5 * want)
    nothing = pixel_loss({"out": logits}, torch.full((1, 2, 2), IGNORE))
    assert nothing.item() == 0.0
    nothing.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# ---------------------------------------------------------------------------------------------- the set
def test_the_set_is_made_reproducibly(tmp_path):
    a, b, c = (_make(tmp_path / n, seed=s, train=3, test=2) for n, s in (("a", 1), ("b", 1), ("c", 2)))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 1 + 1 + 2 * (3 + 2)  # classes.txt, provenance.json, images and masks
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files if f.suffix == ".png")
    assert (a / "classes.txt").read_text().splitlines()[:2] == ["background", "airplane"]


def test_masks_are_the_coco_layouts_boxes_painted_with_class_plus_one(tmp_path):
    m, c = _make(tmp_path / "m", train=3, test=2), _make(tmp_path / "c", "coco", train=3, test=2)
    doc = json.loads((c / "train" / "annotations.json").read_text())
    for im in doc["images"]:
        assert (m / "images/train" / im["file_name"]).read_bytes() == (
            c / "train/images" / im["file_name"]
        ).read_bytes()
        mask = np.asarray(Image.open(m / "masks/train" / im["file_name"].replace(".jpg", ".png")))
        assert mask.shape == (im["height"], im["width"])
        want = np.zeros_like(mask)
        for a in doc["annotations"]:
            if a["image_id"] == im["id"]:
                x, y, w, h = (int(v) for v in a["bbox"])
                assert (mask[y : y + h, x : x + w] == a["category_id"]).all()  # COCO's ids count from 1 too
                want[y : y + h, x : x + w] = a["category_id"]
        assert np.array_equal(mask, want)  # and 0 everywhere else


def test_later_objects_paint_over_earlier_ones():
    from filterprune.data.detection import Sample  # reason: only this test builds a sample by hand

    boxes = np.array([[0, 0, 4, 4], [2, 2, 6, 6]], np.float32)
    mask = paint(Sample("x.jpg", 6, 6, boxes, np.array([0, 4])))
    assert mask[1, 1] == 1 and mask[3, 3] == 5 and mask[5, 5] == 5 and mask[0, 5] == 0


# ---------------------------------------------------------------------------------- reading and batches
def test_letterbox_scales_image_and_mask_together_and_pads_with_ignore():
    image = Image.fromarray(np.full((20, 40, 3), 255, np.uint8))
    mask = Image.fromarray(np.tile(np.array([1, 2], np.uint8), (20, 20)))  # striped: nearest keeps 1 and 2
    x, y = letterbox(image, mask, 16)
    assert x.shape == (16, 16, 3) and y.shape == (16, 16)
    assert set(np.unique(y[:8])) <= {1, 2} and (y[8:] == IGNORE).all()
    assert np.allclose(x[:8], (1 - np.asarray(MEAN)) / np.asarray(STD)) and (x[8:] == 0).all()


def test_the_source_batches_letterboxed_images_and_masks(seg):
    data = SegmentationSource.load(f"masks:{seg}", 0.2, seed=0, side=SIDE)
    assert (len(data.y_train), len(data.y_val), len(data.y_test), data.num_classes) == (5, 1, 3, 11)
    assert data.mean == MEAN and data.image_size == SIDE
    unasked, largest = (
        SegmentationSource.load(f"masks:{seg}", 0, 0, None),
        max(max(p.width, p.height) for p in data.data.train),
    )
    assert unasked.image_size % 32 == 0 and largest <= unasked.image_size < largest + 32
    assert [len(b[0]) for b in data.make_loader("train", 2)] == [2, 2]  # the fifth image's batch dropped
    assert [len(b[0]) for b in data.make_loader("test", 2)] == [2, 1]
    x, y = next(iter(data.make_loader("train", 4, shuffle=False)))
    assert x.shape == (4, 3, SIDE, SIDE) and x.dtype == torch.float32
    assert y.shape == (4, SIDE, SIDE) and y.dtype == torch.int64
    values = set(torch.unique(y).tolist())
    assert 0 in values and values <= set(range(11)) | {IGNORE}
    flips = []
    for seed in range(3):
        torch.manual_seed(seed)
        fx, fy = next(iter(data.make_loader("train", 4, augment=True, shuffle=False)))
        for a, b, m, n in zip(x, fx, y, fy):
            flips.append(not torch.equal(a, b))
            assert torch.equal(b, a.flip(-1) if flips[-1] else a)
            assert torch.equal(n, m.flip(-1) if flips[-1] else m)
    assert 0 < sum(flips) < len(flips)


def test_a_training_step_distills_and_evaluation_gives_miou(seg, one_thread):
    data = SegmentationSource.load(f"masks:{seg}", 0.2, seed=0, side=SIDE)
    task, model = make_task("segmentation"), segmenter("lraspp_mobilenet_v3_large", 11, 3)
    torch.manual_seed(0)
    batch = next(iter(data.make_loader("train", 2)))
    cfg = TrainConfig(distill_temperature=4.0)
    plain = task.step(model.eval(), None, batch, CPU, 0.0, cfg)
    assert plain.examples == 2 and plain.correct is None and torch.isfinite(plain.loss)
    self_taught = task.step(model, model, batch, CPU, 0.25, cfg)  # its own teacher: the KL term is 0
    assert torch.allclose(self_taught.loss, 0.75 * plain.loss, atol=1e-6)
    self_taught.loss.backward()
    assert all(p.grad is not None for p in model.classifier.parameters())
    metrics = task.evaluate(model, data, CPU, split="val")
    assert set(metrics) == {"miou", "pixel_acc"} and 0.0 <= metrics["miou"] <= 1.0


def test_the_exported_file_is_out_alone_with_parity(tmp_path, one_thread):
    model = OutOnly(segmenter("lraspp_mobilenet_v3_large", 3, 3)).eval()
    assert model(torch.randn(2, 3, SIDE, SIDE)).shape == (2, 3, SIDE, SIDE)
    path = export_onnx(model, tmp_path / "m.onnx", (3, SIDE, SIDE), outputs=("out",))
    assert check_parity(model, path, (3, SIDE, SIDE))["max_rel_diff"] < 1e-4


# ----------------------------------------------------------------------------------------- bad input
def _spoil(seg, tmp_path, how):
    bad = tmp_path / "bad"
    shutil.copytree(seg, bad)
    mask = bad / "masks" / "train" / "000001.png"
    if how == "size":
        Image.fromarray(np.zeros((7, 9), np.uint8)).save(mask)
    elif how == "value":
        m = np.asarray(Image.open(mask)).copy()
        m[0, 0] = 11
        Image.fromarray(m).save(mask)
    else:
        mask.unlink()
    return bad


@pytest.mark.parametrize(
    "how, pattern",
    [
        ("size", r"000001.png: mask is 9x7 pixels but its image is \d+x\d+"),
        ("value", r"000001.png: mask value 11 is no class \(0..10\) nor 255"),
        ("missing", r"000001.png: mask file missing"),
    ],
)
def test_a_bad_mask_is_one_line_exit_2_and_nothing_written(seg, tmp_path, capfd, how, pattern):
    bad, out = _spoil(seg, tmp_path, how), tmp_path / "o"
    argv = ["compress", LRASPP, "--task", "segmentation", "--dataset", f"masks:{bad}", "--criterion", "l1"]
    assert main([*argv, "--sparsity", "0.3", "--epochs", "0", "--out", str(out)]) == 2
    assert re.search(pattern, _one_line(capfd))
    assert not out.exists()
    with pytest.raises(UsageError, match=pattern):
        masks(bad)


def test_a_mask_value_of_255_is_accepted(seg, tmp_path):
    ok = tmp_path / "ok"
    shutil.copytree(seg, ok)
    mask = ok / "masks" / "train" / "000001.png"
    m = np.asarray(Image.open(mask)).copy()
    m[:2] = IGNORE
    Image.fromarray(m).save(mask)
    assert len(masks(ok).train) == 6


@pytest.mark.parametrize(
    "argv, pattern",
    [
        ([LRASPP], r"tv:lraspp_mobilenet_v3_large is a torchvision segmenter; .*pass --task segmentation"),
        (
            [LRASPP, "--task", "detection", "--dataset", "coco:unread"],
            r"--task detection takes a torchvision detector .*\(a segmenter: pass --task segmentation\)",
        ),
        (
            ["tv:ssdlite320_mobilenet_v3_large", "--task", "segmentation"],
            r"--task segmentation takes a torchvision segmenter .*not tv:ssdlite320",
        ),
        (["resnet20", "--task", "segmentation"], r"--task segmentation takes a torchvision segmenter"),
        ([LRASPP, "--task", "segmentation", "--dataset", "cifar10"], r"cifar10 is a classification set"),
        (
            [LRASPP, "--task", "segmentation", "--criterion", "greedy"],
            r"criterion greedy scores channels on classification batches",
        ),
        ([LRASPP, "--task", "segmentation", "--image-size", "16"], r"letterbox side must be 32 to"),
        (
            ["tv:deeplabv3_mobilenet_v3_large", "--task", "segmentation", "--batch-size", "1"],
            r"image-pooling branch .* batches of 2 or more images \(--batch-size 1, ",
        ),
    ],
    ids=[
        "to-classification",
        "to-detection",
        "detector",
        "classifier",
        "dataset",
        "criterion",
        "size",
        "batch",
    ],
)
def test_a_task_mismatch_is_one_line_exit_2_and_nothing_written(seg, tmp_path, capfd, argv, pattern):
    dataset = f"masks:{seg}" if "segmentation" in argv else "cifar10"
    assert_compress_refused(argv, dataset, tmp_path, capfd, pattern)


def test_the_task_is_registered():
    assert "segmentation" in TASKS.names()
    task = make_task("segmentation")
    assert (task.headline, task.output_name, task.input_range) == ("miou", "out", None)


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.parametrize(
    "model, criterion",
    [(LRASPP, "l1"), ("tv:deeplabv3_mobilenet_v3_large", "taylor")],
    ids=["lraspp", "deeplab"],
)
def test_compress_a_segmenter_end_to_end(seg, tmp_path, one_thread, model, criterion):
    """Batch 2 over 5 training images: the last batch, of one image, is dropped (DeepLabV3's pooling
    branch cannot train on it); taylor scores channels by the per-pixel loss."""
    out = tmp_path / "run"
    argv = [
        "compress", model, "--task", "segmentation", "--dataset", f"masks:{seg}", "--criterion", criterion,
        "--sparsity", "0.3", "--epochs", "1", "--finetune-epochs", "1", "--image-size", str(SIDE),
        "--batch-size", "2", "--bench-batch-sizes", "1", "--bench-iters", "2", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    r = json.loads((out / "report.json").read_text())
    assert r["task"] == "segmentation" and r["metrics"]["headline"] == "miou"
    assert r["criterion"] == criterion
    assert r["metrics"]["names"] == {"miou": "mIoU", "pixel_acc": "pixel accuracy"}
    for variant in ("dense", "pruned"):
        assert 0.0 <= r["metrics"][variant]["miou"] <= 1.0
        assert r[variant]["accuracy"] == r["metrics"][variant]["miou"]
    assert r["pruned"]["macs"] < r["dense"]["macs"] and r["finetune"]["distill"] != "off"
    assert r["onnx"]["max_rel_diff"] < 1e-4 and (out / "model.onnx").is_file()
    assert "val_miou" in r["finetune"]["history"][0]
    assert "| mIoU | pixel accuracy |" in (out / "report.md").read_text()
    # `filterprune export RUN` writes the network the task deploys: one `out` tensor, parity checked
    assert main(["export", str(out), "--out", str(tmp_path / "again.onnx"), "--batch", "1"]) == 0
    proto = onnx.load(str(tmp_path / "again.onnx"))
    assert [o.name for o in proto.graph.output] == ["out"]

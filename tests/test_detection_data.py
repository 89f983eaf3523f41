"""Detection data: the pasted-CIFAR set (made from a seed, train and test photos kept apart), the
``coco:DIR`` / ``yolo:DIR`` readers, every bad annotation as one line naming its file, and the
classification pipeline's refusal of a detection folder."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image

from filterprune.cli import main
from filterprune.data import DATASETS, load_dataset, load_detection
from filterprune.data.detection import collate
from filterprune.data.pasted import make_detection_set, read_source
from filterprune.errors import UsageError

CIFAR = SHARED_DATA / "cifar10_mini.npz"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The same small set (seed 3) in both layouts."""
    if not CIFAR.is_file():
        pytest.skip(f"real data not found at {CIFAR}")
    root = tmp_path_factory.mktemp("made")
    return {
        layout: make_detection_set(root / layout, layout, train=12, test=6, seed=3, source=CIFAR)
        for layout in ("coco", "yolo")
    }


def _one_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("filterprune: error:")]
    assert "Traceback" not in err and len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    return lines[0]


# ------------------------------------------------------------------------------------ the pasted set
def test_both_layouts_read_back_the_same_canvases_as_made(made):
    c, y = load_detection(f"coco:{made['coco']}"), load_detection(f"yolo:{made['yolo']}")
    assert c.class_names == y.class_names == list(read_source(CIFAR)[1])
    photos = read_source(CIFAR)[0]
    about = json.loads((made["coco"] / "provenance.json").read_text())
    for split in ("train", "test"):
        a, b = c.split(split), y.split(split)
        assert len(a) == len(b) == {"train": 12, "test": 6}[split]
        for s, t, rec in zip(a, b, about["canvases"][split]):
            assert (s.width, s.height) == (t.width, t.height)
            assert np.array_equal(s.labels, t.labels)
            assert np.abs(s.boxes - t.boxes).max() < 1e-3  # YOLO's 6 decimals
            assert s.labels.tolist() == photos[split].y[rec["objects"]].tolist()


def test_canvases_hold_1_to_4_disjoint_objects_of_32_to_96_px(made):
    data = load_detection(f"coco:{made['coco']}")
    for s in data.train + data.test:
        assert 160 <= s.width <= 320 and 160 <= s.height <= 320
        assert 1 <= len(s.boxes) <= 4
        w, h = s.boxes[:, 2] - s.boxes[:, 0], s.boxes[:, 3] - s.boxes[:, 1]
        assert ((w >= 32) & (w <= 96) & (h >= 32) & (h <= 96)).all()
        assert (
            (s.boxes[:, :2] >= 0).all()
            and (s.boxes[:, 2] <= s.width).all()
            and (s.boxes[:, 3] <= s.height).all()
        )
        for i in range(len(s.boxes)):
            for j in range(i):
                a, b = s.boxes[i], s.boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], "objects overlap"


def test_same_seed_same_set_and_a_larger_set_begins_with_the_smaller(made, tmp_path):
    again = make_detection_set(tmp_path / "again", "coco", train=5, test=2, seed=3, source=CIFAR)
    other = make_detection_set(tmp_path / "other", "coco", train=5, test=2, seed=4, source=CIFAR)
    for i in range(5):
        name = f"train/images/{i:06d}.jpg"
        assert (again / name).read_bytes() == (made["coco"] / name).read_bytes()
        assert (other / name).read_bytes() != (made["coco"] / name).read_bytes()
    small, big = load_detection(f"coco:{again}"), load_detection(f"coco:{made['coco']}")
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(small.train, big.train))


def test_no_test_photo_in_a_train_canvas_and_no_train_photo_in_a_test_canvas(tmp_path):
    """From a source whose training photos are all bright and test photos all dark, every pixel of a
    train canvas (backgrounds and objects) is bright and every pixel of a test canvas dark."""
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "src.npz",
        x_train=rng.integers(200, 256, (40, 3, 32, 32), dtype=np.uint8),
        y_train=rng.integers(0, 3, 40),
        x_test=rng.integers(0, 40, (20, 3, 32, 32), dtype=np.uint8),
        y_test=rng.integers(0, 3, 20),
        label_names=np.array(["a", "b", "c"]),
    )
    out = make_detection_set(tmp_path / "set", "yolo", train=8, test=8, seed=0, source=tmp_path / "src.npz")
    for split, ok in (("train", lambda x: x.min() > 128), ("test", lambda x: x.max() < 128)):
        for f in sorted((out / split / "images").iterdir()):
            assert ok(np.asarray(Image.open(f))), f"{split} canvas {f.name} holds a photo of the other split"


def test_each_object_is_the_recorded_photo_of_its_own_split(made):
    """On the real photos: every pasted object, scaled back to 32x32, is nearest to the photo provenance.json
    names, among all train and test photos (flipped or not)."""
    photos = read_source(CIFAR)[0]
    pool = np.concatenate([photos["train"].x, photos["test"].x]).reshape(-1, 32 * 32 * 3).astype(np.float32)
    about = json.loads((made["coco"] / "provenance.json").read_text())
    data = load_detection(f"coco:{made['coco']}")
    crops, expected = [], []
    for split, offset in (("train", 0), ("test", len(photos["train"].x))):
        for s, rec in zip(data.split(split), about["canvases"][split]):
            img = Image.open(s.path)
            for box, idx in zip(s.boxes.tolist(), rec["objects"]):
                crop = np.asarray(
                    img.crop(tuple(int(v) for v in box)).resize((32, 32), Image.BICUBIC), np.float32
                )
                crops += [crop.reshape(-1), crop[:, ::-1].reshape(-1)]
                expected.append(offset + idx)
    c = np.stack(crops)
    d = (pool**2).sum(1)[:, None] - 2 * pool @ c.T + (c**2).sum(1)[None]  # squared distances, photo x crop
    nearest = d.reshape(len(pool), -1, 2).min(2).argmin(0)
    assert len(expected) > 30 and nearest.tolist() == expected


def test_batches_are_lists_of_unnormalised_images_and_torchvision_targets(made):
    data = load_detection(f"yolo:{made['yolo']}")
    images, targets = next(iter(data.make_loader("train", batch_size=4, shuffle=False)))
    assert len(images) == len(targets) == 4
    assert len({tuple(x.shape) for x in images}) > 1  # sizes differ: nothing stacked
    for x, t, s in zip(images, targets, data.train):
        assert (
            x.dtype == torch.float32 and x.shape == (3, s.height, s.width) and 0 <= x.min() and x.max() <= 1
        )
        assert t["boxes"].dtype == torch.float32 and t["boxes"].shape == (len(s.labels), 4)
        assert t["labels"].dtype == torch.int64 and t["labels"].tolist() == s.labels.tolist()
    assert collate([(1, "a"), (2, "b")]) == ([1, 2], ["a", "b"])
    assert "12 train / 6 test images" in data.describe()
    assert {"coco:<name>", "yolo:<name>"} <= set(DATASETS.names())


# --------------------------------------------------------------------------------- tiny sets, bad input
def _image(path, w=40, h=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 120, 150)).save(path)


def _coco(root, edit=None, test=True):
    """A valid two-image COCO folder (one image without objects); ``edit(doc)`` spoils the train split."""
    for split in ("train", "test") if test else ("train",):
        _image(root / split / "images" / "a.png")
        _image(root / split / "images" / "b.png")
        doc = {
            "images": [
                {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
            ],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 5, "bbox": [2, 3, 10, 12], "iscrowd": 0},
                {"id": 2, "image_id": 1, "category_id": 9, "bbox": [20, 10, 19.5, 20]},
            ],
            "categories": [{"id": 9, "name": "dog"}, {"id": 5, "name": "cat"}],
        }
        if edit and split == "train":
            edit(doc)
        (root / split / "annotations.json").write_text(json.dumps(doc))
    return root


def _yolo(root, lines=("0 0.25 0.5 0.25 0.5",), test=True):
    """A valid YOLO folder: classes cat, dog; a.png with ``lines``, b.png without objects."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    for split in ("train", "val") if test else ("train",):
        _image(root / split / "images" / "a.png")
        _image(root / split / "images" / "b.png")
        (root / split / "labels").mkdir(exist_ok=True)
        (root / split / "labels" / "a.txt").write_text("\n".join(lines) + "\n")
        (root / split / "labels" / "b.txt").write_text("")
    return root


def test_valid_tiny_folders_read_with_their_conventions(tmp_path):
    c = load_detection(f"coco:{_coco(tmp_path / 'c')}")
    assert c.class_names == ["cat", "dog"]  # category id order, ids 5 and 9 -> labels 0 and 1
    a, b = c.train
    assert a.labels.tolist() == [0, 1] and len(b.labels) == 0  # an image without objects is kept
    assert a.boxes.tolist() == [[2, 3, 12, 15], [20, 10, 39.5, 30]]
    y = load_detection(f"yolo:{_yolo(tmp_path / 'y')}")  # val/ is the test split
    assert y.class_names == ["cat", "dog"] and len(y.test) == 2
    assert y.train[0].boxes.tolist() == [[5, 7.5, 15, 22.5]] and len(y.train[1].labels) == 0
    # ultralytics' own arrangement, images/train beside labels/train, and a names mapping
    u = tmp_path / "u"
    for split in ("train", "test"):
        _image(u / "images" / split / "x.jpg", 64, 48)
        (u / "labels" / split).mkdir(parents=True)
        (u / "labels" / split / "x.txt").write_text("1 0.5 0.5 1.0 1.0\n")
    (u / "data.yaml").write_text("nc: 2\nnames: {0: cat, 1: dog}\n")
    assert load_detection(f"yolo:{u}").train[0].boxes.tolist() == [[0, 0, 64, 48]]


def _drop_image(doc):
    doc["images"][1]["file_name"] = "gone.png"


COCO_BAD = [
    (
        "box-outside",
        lambda d: d["annotations"][1].update(bbox=[30, 10, 15, 5]),
        r"annotation id 2: box .* outside the 40x30 image",
    ),
    (
        "box-negative",
        lambda d: d["annotations"][0].update(bbox=[-5, 3, 10, 12]),
        r"annotation id 1: box .* outside",
    ),
    ("box-empty", lambda d: d["annotations"][0].update(bbox=[2, 3, 0, 12]), r"annotation id 1: empty box"),
    (
        "box-nan",
        lambda d: d["annotations"][0].update(bbox=[2, 3, float("nan"), 12]),
        r"malformed JSON|finite",
    ),
    ("box-short", lambda d: d["annotations"][0].update(bbox=[2, 3, 4]), r"annotation id 1: bbox must be"),
    (
        "unknown-category",
        lambda d: d["annotations"][0].update(category_id=99),
        r"annotation id 1: category_id 99 is not among the 2",
    ),
    (
        "unknown-image",
        lambda d: d["annotations"][0].update(image_id=7),
        r"annotation id 1: image_id 7 is not among",
    ),
    ("missing-image", _drop_image, r"gone.png: image not found"),
    (
        "size-mismatch",
        lambda d: d["images"][0].update(width=41),
        r"image id 1: declared 41x30 but 'a.png' is 40x30",
    ),
    (
        "escaping-file",
        lambda d: d["images"][0].update(file_name="../../a.png"),
        r"image id 1: file_name .* leads outside",
    ),
    ("duplicate-image", lambda d: d["images"][1].update(id=1), r"image id 1 appears twice"),
    (
        "duplicate-annotation",
        lambda d: d["annotations"][1].update(id=1),
        r"annotation id 1: annotation id appears twice",
    ),
    ("no-objects", lambda d: d.update(annotations=[]), r"train/annotations.json: no annotations"),
    ("no-categories", lambda d: d.update(categories=[]), r"no categories"),
    ("bool-id", lambda d: d["images"][0].update(id=True), r"image #0: 'id' missing or not an integer"),
    ("not-a-list", lambda d: d.update(images={}), r"'images' must be a list"),
]


@pytest.mark.parametrize("edit, pattern", [c[1:] for c in COCO_BAD], ids=[c[0] for c in COCO_BAD])
def test_a_bad_coco_annotation_is_one_usage_error_naming_its_file(tmp_path, edit, pattern):
    root = _coco(tmp_path / "c", edit)
    with pytest.raises(UsageError, match=pattern) as e:
        load_detection(f"coco:{root}")
    assert str(root / "train") in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"", "malformed JSON"),
        (b'{"images": [', "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[]", "expected a JSON object"),
    ],
    ids=["empty", "truncated", "not-utf8", "a-list"],
)
def test_an_unreadable_coco_file_is_one_usage_error(tmp_path, content, pattern):
    root = _coco(tmp_path / "c")
    (root / "train" / "annotations.json").write_bytes(content)
    with pytest.raises(UsageError, match=f"annotations.json: {pattern}"):
        load_detection(f"coco:{root}")


def test_coco_folders_without_a_split_or_with_other_categories_are_refused(tmp_path):
    with pytest.raises(UsageError, match="no test split"):
        load_detection(f"coco:{_coco(tmp_path / 'a', test=False)}")
    root = _coco(tmp_path / "b")
    doc = json.loads((root / "test" / "annotations.json").read_text())
    doc["categories"][0]["name"] = "wolf"
    (root / "test" / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="test/annotations.json: categories differ"):
        load_detection(f"coco:{root}")
    with pytest.raises(UsageError, match="not a folder"):
        load_detection(f"coco:{tmp_path / 'none'}")


YOLO_BAD = [
    ("box-outside", ["0 0.9 0.5 0.4 0.2"], r"a.txt:1: box .* outside the 40x30 image"),
    ("box-negative", ["0 0.5 0.5 0.2 0.2", "1 -0.1 0.5 0.2 0.2"], r"a.txt:2: box .* outside"),
    ("box-empty", ["0 0.5 0.5 0 0.2"], r"a.txt:1: empty box"),
    ("box-nan", ["0 nan 0.5 0.2 0.2"], r"a.txt:1: box coordinates must be finite"),
    (
        "class-beyond",
        ["0 0.5 0.5 0.2 0.2", "", "2 0.5 0.5 0.2 0.2"],
        r"a.txt:3: class id 2 is beyond the 2 classes",
    ),
    ("class-negative", ["-1 0.5 0.5 0.2 0.2"], r"a.txt:1: class id -1 is beyond"),
    ("class-float", ["1.5 0.5 0.5 0.2 0.2"], r"a.txt:1: expected an integer class and 4 numbers"),
    ("four-fields", ["0 0.5 0.5 0.2"], r"a.txt:1: expected 'class cx cy w h', got 4 fields"),
    ("polygon", ["0 0.1 0.1 0.2 0.1 0.2 0.2"], r"a.txt:1: .*segment polygons are not read"),
    ("words", ["cat 0.5 0.5 0.2 0.2"], r"a.txt:1: expected an integer class"),
    ("all-empty", [""], r"train/labels: every label file is empty"),
]


@pytest.mark.parametrize("lines, pattern", [c[1:] for c in YOLO_BAD], ids=[c[0] for c in YOLO_BAD])
def test_a_bad_yolo_line_is_one_usage_error_naming_file_and_line(tmp_path, lines, pattern):
    root = _yolo(tmp_path / "y", lines)
    with pytest.raises(UsageError, match=pattern) as e:
        load_detection(f"yolo:{root}")
    assert "\n" not in str(e.value)


def test_yolo_files_that_do_not_pair_up_and_bad_class_lists_are_refused(tmp_path):
    root = _yolo(tmp_path / "a")
    (root / "train" / "labels" / "b.txt").unlink()
    with pytest.raises(
        UsageError, match=r"train/labels/b.txt: label file missing \(an image without objects"
    ):
        load_detection(f"yolo:{root}")
    root = _yolo(tmp_path / "b")
    (root / "train" / "images" / "a.png").unlink()  # a missing image
    with pytest.raises(UsageError, match=r"train/labels/a.txt: no image for this label file"):
        load_detection(f"yolo:{root}")
    root = _yolo(tmp_path / "c")
    (root / "train" / "images" / "b.png").write_bytes(b"not an image")
    with pytest.raises(UsageError, match=r"b.png: not a readable image"):
        load_detection(f"yolo:{root}")
    for text, pattern in (
        ("names: [cat", "data.yaml: malformed YAML"),
        ("names: {0: cat, 2: dog}", "'names' must be"),
        ("nc: 3\nnames: [cat, dog]", "nc is 3 but 2 names"),
    ):
        (root / "data.yaml").write_text(text)
        with pytest.raises(UsageError, match=pattern):
            load_detection(f"yolo:{root}")
    (root / "data.yaml").unlink()
    with pytest.raises(UsageError, match="no data.yaml"):
        load_detection(f"yolo:{root}")
    with pytest.raises(UsageError, match="no test split"):
        load_detection(f"yolo:{_yolo(tmp_path / 'd', test=False)}")


def test_a_box_over_an_edge_by_under_a_pixel_is_clipped(tmp_path):
    root = _coco(tmp_path / "c", lambda d: d["annotations"][1].update(bbox=[20, 10, 20.6, 20.4]))
    assert load_detection(f"coco:{root}").train[0].boxes[1].tolist() == [20, 10, 40, 30]


# ------------------------------------------------------------------------------------- the command line
def test_the_classification_pipeline_refuses_a_detection_folder(tmp_path, capfd):
    root = _coco(tmp_path / "c")
    argv = [
        "compress",
        "resnet20",
        "--criterion",
        "l1",
        "--dataset",
        f"coco:{root}",
        "--epochs",
        "0",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    line = _one_line(capfd)
    assert f"--dataset coco:{root}: coco: is a detection set (boxes per image); classification needs" in line
    assert line.endswith("pass --task detection")
    assert main(["train", "resnet20", "--dataset", f"yolo:{root}", "--out", str(tmp_path / "o")]) == 2
    assert "yolo: is a detection set" in _one_line(capfd)
    assert not (tmp_path / "o").exists()
    with pytest.raises(UsageError, match="coco: is a detection set"):
        load_dataset(f"coco:{root}")
    with pytest.raises(UsageError, match="is no detection folder"):
        load_detection("cifar10")


def test_make_detection_set_command_and_its_bad_input(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = ["--source", str(CIFAR)]
    for argv, pattern in (
        (["--train", "0", *src], r"--train must be a count of canvases in 1\.\.100000, got 0"),
        (["--test", "100001", *src], r"--test must be a count"),
        (["--seed", "-1", *src], r"--seed must be a non-negative integer"),
        (["--source", "nowhere.npz"], r"--source not found: nowhere.npz"),
        (["--layout", "voc", *src], r"invalid choice: 'voc'"),
    ):
        assert main(["make-detection-set", "out", *argv]) == 2
        assert re.search(pattern, _one_line(capfd))
    np.savez(tmp_path / "flat.npz", x=np.zeros((4, 3, 8, 8), np.uint8), y=np.zeros(4, np.int64))
    assert main(["make-detection-set", "out", "--source", "flat.npz"]) == 2
    assert "flat.npz: needs x_train uint8" in _one_line(capfd)
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    if CIFAR.is_file():
        assert main(["make-detection-set", "out", *src, "--train", "2", "--test", "1"]) == 2
        assert "already exists and is not empty" in _one_line(capfd)
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
        assert main(["make-detection-set", "out", *src, "--train", "2", "--test", "1", "--overwrite"]) == 0
        assert len(load_detection(f"coco:{tmp_path / 'out'}").train) == 2
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_parsing_the_command_line_imports_no_torch():
    code = "import sys, filterprune.cli as c; c.build_parser(); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )

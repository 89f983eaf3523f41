"""``yolo:DIR``: detection folders in the YOLO (ultralytics, Roboflow) layout, read and written.

    DIR/data.yaml                names: [airplane, ...] or {0: airplane, ...} (or only nc: N)
    DIR/train/images/x.jpg       DIR/train/labels/x.txt: one "class cx cy w h" line per object,
    DIR/test/...  (or val/, valid/)                     coordinates normalised to [0, 1] by the image's size

ultralytics' own arrangement, ``DIR/images/train`` beside ``DIR/labels/train``, is read as well. An image
without objects has an empty .txt (as ultralytics writes it); a missing .txt, or a .txt without its image, is
refused: it is more often a misplaced folder than a background image.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .. import safeload
from ..errors import UsageError
from ..fileio import atomic_write_bytes
from ..limits import printable
from .detection import (
    IMAGE_SUFFIXES,
    DetectionData,
    Sample,
    check_box,
    image_size,
    pick_test_split,
    sample,
    where,
)

DATA_YAML = ("data.yaml", "data.yml")
MAX_LABEL_BYTES = 1 << 20  # a label file of 20,000 boxes


def _names(root: Path) -> list[str]:
    path = next((root / n for n in DATA_YAML if (root / n).is_file()), None)
    if path is None:
        raise UsageError(
            f"{where(root)}: no data.yaml naming the classes (YOLO layout: see docs/reference.md)"
        )
    try:
        doc = safeload.load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as e:  # bad UTF-8 is a ValueError
        msg = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(f"{where(path)}: malformed YAML ({msg})") from None
    names = doc.get("names") if isinstance(doc, dict) else None
    nc = doc.get("nc") if isinstance(doc, dict) else None
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[k] for k in range(len(names))]
    if names is None and isinstance(nc, int) and not isinstance(nc, bool) and nc > 0:
        names = [str(k) for k in range(nc)]
    if not (isinstance(names, list) and names and all(isinstance(n, (str, int)) for n in names)):
        raise UsageError(f"{where(path)}: 'names' must be a list of class names or a mapping 0..N-1 to names")
    if nc is not None and nc != len(names):
        raise UsageError(f"{where(path)}: nc is {printable(str(nc), 40)} but {len(names)} names are given")
    return [str(n) for n in names]


def split_dirs(root: Path, split: str) -> tuple[Path, Path] | None:
    """(images, labels) folders of ``split``: DIR/split/images + labels, or DIR/images/split +
    DIR/labels/split."""
    for images, labels in (
        (root / split / "images", root / split / "labels"),
        (root / "images" / split, root / "labels" / split),
    ):
        if images.is_dir():
            return images, labels
    return None


def _objects(path: Path, size: tuple[int, int], n_classes: int) -> tuple[list, list]:
    """Boxes (xyxy pixels) and labels of one label file; every line checked."""
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise UsageError(f"{where(path)}: larger than {MAX_LABEL_BYTES >> 20} MiB")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as e:
        raise UsageError(f"{where(path)}: unreadable label file ({type(e).__name__})") from None
    boxes, labels = [], []
    w, h = size
    for n, line in enumerate(text.splitlines(), 1):
        parts, at = line.split(), f"{where(path)}:{n}"
        if not parts:
            continue
        if len(parts) != 5:
            why = " (segment polygons are not read)" if len(parts) > 5 else ""
            raise UsageError(f"{at}: expected 'class cx cy w h', got {len(parts)} fields{why}")
        try:
            cls, (cx, cy, bw, bh) = int(parts[0]), (float(p) for p in parts[1:])
        except ValueError:
            raise UsageError(
                f"{at}: expected an integer class and 4 numbers, got {printable(line, 80)!r}"
            ) from None
        if not 0 <= cls < n_classes:
            raise UsageError(f"{at}: class id {cls} is beyond the {n_classes} classes of data.yaml")
        box = ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
        boxes.append(check_box(box, w, h, at))
        labels.append(cls)
    return boxes, labels


def read_split(images: Path, labels: Path, n_classes: int) -> list[Sample]:
    files = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    stems: dict[Path, Path] = {}
    for f in files:
        stem = f.relative_to(images).with_suffix("")
        if stem in stems:
            raise UsageError(f"{where(f)}: shares its label file with {where(stems[stem])}")
        stems[stem] = f
    for txt in sorted(labels.rglob("*.txt")) if labels.is_dir() else []:
        if txt.relative_to(labels).with_suffix("") not in stems:
            raise UsageError(f"{where(txt)}: no image for this label file in {where(images)}")
    samples = []
    for stem, f in stems.items():
        txt = labels / stem.with_suffix(".txt")
        if not txt.is_file():
            raise UsageError(f"{where(txt)}: label file missing (an image without objects has an empty .txt)")
        size = image_size(f)
        samples.append(sample(f, size, *_objects(txt, size, n_classes), where(txt)))
    return samples


def read_yolo(root: Path, name: str) -> DetectionData:
    if not root.is_dir():
        raise UsageError(f"{where(root)}: not a folder (YOLO layout: DIR/data.yaml, DIR/train/images|labels)")
    names = _names(root)
    train = split_dirs(root, "train")
    if train is None:
        raise UsageError(f"{where(root)}: no train/images (or images/train) folder")
    samples = read_split(*train, len(names))
    if not any(len(s.labels) for s in samples):
        raise UsageError(f"{where(train[1])}: every label file is empty (nothing to learn)")
    test = split_dirs(root, pick_test_split(root, lambda s: split_dirs(root, s) is not None))
    assert test is not None  # pick_test_split found it
    return DetectionData(name, str(root), names, samples, read_split(*test, len(names)))


def yolo(path: Path) -> DetectionData:
    return read_yolo(path, f"yolo:{path}")


def write_split(folder: Path, samples: list[Sample]) -> None:
    """``folder/labels/<stem>.txt`` for each sample (its ``path`` relative to ``folder/images``)."""
    (folder / "labels").mkdir(exist_ok=True)
    for s in samples:
        lines = [
            f"{c} {(x1 + x2) / 2 / s.width:.6f} {(y1 + y2) / 2 / s.height:.6f} "
            f"{(x2 - x1) / s.width:.6f} {(y2 - y1) / s.height:.6f}\n"
            for (x1, y1, x2, y2), c in zip(s.boxes.tolist(), s.labels.tolist())
        ]
        atomic_write_bytes(folder / "labels" / Path(s.path).with_suffix(".txt"), "".join(lines).encode())


def write_yaml(root: Path, class_names: list[str], test: str = "test") -> None:
    """``root/data.yaml`` as ultralytics reads it (paths relative to the file's folder)."""
    doc = {
        "train": "train/images",
        "val": f"{test}/images",
        "test": f"{test}/images",
        "nc": len(class_names),
        "names": dict(enumerate(class_names)),
    }
    atomic_write_bytes(root / "data.yaml", yaml.safe_dump(doc, sort_keys=False).encode())

"""``coco:DIR``: detection folders in the COCO layout, read and written.

    DIR/train/annotations.json   {"images": [...], "annotations": [...], "categories": [...]}
    DIR/train/images/<file_name>
    DIR/test/...                 (or val/, valid/)

``bbox`` is COCO's [x, y, width, height] in pixels; labels are the categories' positions in id order (ids
need not be contiguous), so ``class_names`` lists the names in that order. Crowd annotations
(``iscrowd`` 1) are skipped; images without annotations are kept (images with no objects).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..fileio import atomic_write_bytes
from .detection import DetectionData, Sample, check_box, image_size, pick_test_split, sample, where

ANNOTATIONS = "annotations.json"
MAX_JSON_BYTES = 512 << 20  # COCO 2017's train annotations are 448 MB
MAX_DIGITS = 30
KINDS = {int: "an integer", str: "a string"}


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_DIGITS:
        raise ValueError(f"an integer with {len(digits)} digits")
    return int(digits)


def _document(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"{where(path)}: annotation file not found (COCO layout: see docs/reference.md)")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise UsageError(f"{where(path)}: larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        doc = json.loads(path.read_bytes(), parse_int=_bounded_int)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and bad UTF-8 are ValueErrors
        msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f"{where(path)}: malformed JSON ({msg})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{where(path)}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise UsageError(f"{where(path)}: '{key}' must be a list (COCO layout)")
    return doc


def _field(entry, key: str, kind, at: str):
    """``entry[key]`` if it is of ``kind`` (an int is never a bool here)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise UsageError(f"{at}: '{key}' missing or not {KINDS[kind]}")
    return value


def _categories(doc: dict, path: Path) -> dict[int, str]:
    """Category id -> name, in id order."""
    cats: dict[int, str] = {}
    for i, c in enumerate(doc["categories"]):
        at = f"{where(path)}: category #{i}"
        cid, name = _field(c, "id", int, at), _field(c, "name", str, at)
        if cid in cats:
            raise UsageError(f"{at}: category id {cid} appears twice")
        cats[cid] = name
    if not cats:
        raise UsageError(f"{where(path)}: no categories")
    return dict(sorted(cats.items()))


def _image(entry, i: int, path: Path, images: Path) -> tuple[int, Path, tuple[int, int]]:
    at = f"{where(path)}: image #{i}"
    iid = _field(entry, "id", int, at)
    at = f"{where(path)}: image id {iid}"
    name = _field(entry, "file_name", str, at)
    size = (_field(entry, "width", int, at), _field(entry, "height", int, at))
    file = images / name
    inside = images.resolve()
    if Path(name).is_absolute() or ".." in Path(name).parts or not file.resolve().is_relative_to(inside):
        raise UsageError(f"{at}: file_name {name!r} leads outside {where(images)}")
    actual = image_size(file)
    if actual != size:
        raise UsageError(f"{at}: declared {size[0]}x{size[1]} but {name!r} is {actual[0]}x{actual[1]} pixels")
    return iid, file, size


def _boxes(doc: dict, path: Path, sizes: dict, labels: dict) -> dict[int, tuple[list, list]]:
    """image id -> (boxes xyxy, labels) of its annotations."""
    out: dict[int, tuple[list, list]] = {iid: ([], []) for iid in sizes}
    seen: set[int] = set()
    for i, a in enumerate(doc["annotations"]):
        aid = _field(a, "id", int, f"{where(path)}: annotation #{i}")
        at = f"{where(path)}: annotation id {aid}"
        if aid in seen:
            raise UsageError(f"{at}: annotation id appears twice")
        seen.add(aid)
        if a.get("iscrowd"):
            continue
        iid, cid = _field(a, "image_id", int, at), _field(a, "category_id", int, at)
        if iid not in sizes:
            raise UsageError(f"{at}: image_id {iid} is not among the images")
        if cid not in labels:
            raise UsageError(f"{at}: category_id {cid} is not among the {len(labels)} categories")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise UsageError(f"{at}: bbox must be [x, y, width, height] numbers, got {str(bbox)[:80]}")
        x, y, w, h = (float(v) for v in bbox)
        width, height = sizes[iid]
        out[iid][0].append(check_box((x, y, x + w, y + h), width, height, at))
        out[iid][1].append(labels[cid])
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_split(folder: Path) -> tuple[list[str], list[Sample]]:
    """Class names (category id order) and the samples of one split folder, checked."""
    path = folder / ANNOTATIONS
    doc = _document(path)
    cats = _categories(doc, path)
    labels = {cid: k for k, cid in enumerate(cats)}
    files, sizes = {}, {}
    for i, entry in enumerate(doc["images"]):
        iid, file, size = _image(entry, i, path, folder / "images")
        if iid in files:
            raise UsageError(f"{where(path)}: image id {iid} appears twice")
        files[iid], sizes[iid] = file, size
    boxes = _boxes(doc, path, sizes, labels)
    at = where(path)
    samples = [sample(files[i], sizes[i], *boxes[i], f"{at}: image id {i}") for i in sorted(files)]
    return list(cats.values()), samples


def read_coco(root: Path, name: str) -> DetectionData:
    if not root.is_dir():
        raise UsageError(
            f"{where(root)}: not a folder (COCO layout: DIR/train/{ANNOTATIONS}, DIR/train/images)"
        )
    names, train = read_split(root / "train")
    if not any(len(s.labels) for s in train):
        raise UsageError(f"{where(root / 'train' / ANNOTATIONS)}: no annotations (nothing to learn)")
    test_dir = root / pick_test_split(root, lambda s: (root / s / ANNOTATIONS).is_file())
    test_names, test = read_split(test_dir)
    if test_names != names:
        raise UsageError(f"{where(test_dir / ANNOTATIONS)}: categories differ from the train split's")
    return DetectionData(name, str(root), names, train, test)


def coco(path: Path) -> DetectionData:
    return read_coco(path, f"coco:{path}")


def write_split(folder: Path, samples: list[Sample], class_names: list[str]) -> None:
    """``folder/annotations.json`` for ``samples`` (their ``path`` relative to ``folder/images``); category
    ids count from 1, as in COCO."""
    images: list[dict] = []
    annotations: list[dict] = []
    for iid, s in enumerate(samples, 1):
        images.append({"id": iid, "file_name": s.path, "width": s.width, "height": s.height})
        for (x1, y1, x2, y2), label in zip(s.boxes.tolist(), s.labels.tolist()):
            w, h = x2 - x1, y2 - y1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": iid,
                    "category_id": label + 1,
                    "bbox": [x1, y1, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": n, "supercategory": "cifar10"} for k, n in enumerate(class_names)]
    doc = {"images": images, "annotations": annotations, "categories": categories}
    atomic_write_bytes(folder / ANNOTATIONS, json.dumps(doc).encode())

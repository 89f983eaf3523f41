"""mAP@0.5:0.95 and mAP@0.5 as the COCO benchmark computes them (pycocotools, the reference code), from
ground truth and predictions held in memory: nothing is written to disk.

Boxes are xyxy pixels; labels are the dataset's 0-based classes. pycocotools' own printout is silenced.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..errors import UsageError


def _pycocotools():
    """The COCO evaluation code (the optional ``detection`` extra)."""
    try:
        from pycocotools.coco import COCO  # optional extra: only the detection task needs it
        from pycocotools.cocoeval import COCOeval  # same
    except ImportError:
        raise UsageError(
            "the detection task measures mAP with pycocotools: pip install 'filterprune[detection]'"
        ) from None
    return COCO, COCOeval


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def ground_truth(targets: list[dict], sizes: list[tuple[int, int]], num_classes: int) -> dict:
    """A COCO annotation document: ``targets[i]`` ({"boxes", "labels"}) of an image of ``sizes[i]``
    (width, height). Category ids are the labels + 1 (COCO's ids start at 1)."""
    images: list[dict] = []
    annotations: list[dict] = []
    for i, (t, (w, h)) in enumerate(zip(targets, sizes)):
        images.append({"id": i, "width": int(w), "height": int(h)})
        for box, label in zip(np.asarray(t["boxes"]).reshape(-1, 4), np.asarray(t["labels"]).reshape(-1)):
            xywh = _xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": int(label) + 1,
                    "bbox": xywh,
                    "area": xywh[2] * xywh[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": str(k)} for k in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}


def results(predictions: list[dict]) -> list[dict]:
    """COCO detection results of ``predictions[i]`` ({"boxes", "scores", "labels"}) for image i."""
    out = []
    for i, p in enumerate(predictions):
        boxes = np.asarray(p["boxes"]).reshape(-1, 4)
        for box, score, label in zip(boxes, np.asarray(p["scores"]), np.asarray(p["labels"])):
            out.append(
                {"image_id": i, "category_id": int(label) + 1, "bbox": _xywh(box), "score": float(score)}
            )
    return out


def coco_map(
    targets: list[dict], predictions: list[dict], sizes: list[tuple[int, int]], num_classes: int
) -> dict:
    """{"map": mAP@0.5:0.95, "map50": mAP@0.5, "images": n}; 0 where nothing was predicted or nothing is
    there to find (pycocotools' -1)."""
    COCO, COCOeval = _pycocotools()
    n = len(targets)
    found = results(predictions)
    gt_doc = ground_truth(targets, sizes, num_classes)
    if not found or not gt_doc["annotations"]:
        return {"map": 0.0, "map50": 0.0, "images": n}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_doc
        gt.createIndex()
        run = COCOeval(gt, gt.loadRes(found), "bbox")
        run.evaluate()
        run.accumulate()
        run.summarize()
    return {"map": max(0.0, float(run.stats[0])), "map50": max(0.0, float(run.stats[1])), "images": n}

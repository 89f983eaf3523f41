"""The table of datasets (``DATASETS``): a name -> a loader that returns ``ImageData`` (or, for the
detection folders ``coco:``/``yolo:``, ``detection.DetectionData``). Every dataset file registers here;
``data/__init__.py`` looks names up in it."""

from __future__ import annotations

from ..errors import UsageError
from ..limits import printable
from ..registry import Registry

DATASETS: Registry = Registry("dataset", prefixes=("npz:", "imagefolder:", "coco:", "yolo:"))
DETECTION = ("coco:", "yolo:")  # boxes per image: for a detection task, not the classification pipeline


def check_classification(name: str, key: str = "dataset") -> None:
    """Refuse a detection folder where the classification task needs one label per image. (The message
    avoids the word ``key`` elsewhere: the command line turns that word into its flag.)"""
    prefix = DATASETS.split(name)[0]
    if prefix in DETECTION:
        raise UsageError(
            f"{key} {printable(name, 200)}: {prefix} is a detection set (boxes per image); the "
            "classification task needs one class label per image (imagefolder:, npz:, cifar10, ...), "
            "and no detection task exists yet",
            (key,),
        )

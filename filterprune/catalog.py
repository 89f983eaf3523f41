"""Every model, dataset, criterion and task the package offers, by name: one line each, pointing at the code
(``"module:attr"`` under ``filterprune``) that is imported only when the name is used. Listing names and
checking them (``filterprune list``, option checks) therefore never imports torch.

Adding a model, dataset, criterion or task is its file plus one line here.
"""

from __future__ import annotations

from .registry import Registry

MODELS: Registry = Registry("model", prefixes=("tv:", "timm:", "yolo:"))
DATASETS: Registry = Registry("dataset", prefixes=("npz:", "imagefolder:", "coco:", "yolo:", "masks:"))
CRITERIA: Registry = Registry("criterion")
TASKS: Registry = Registry("task")

# models: a builder fn(num_classes, in_channels, image_size) -> nn.Module; prefixed ones take the name first
MODELS.add("mlp", "models.mlp:mlp", "fully-connected 784-100x5-10 (SynFlow's fc, L=6, N=100) for MNIST")
for _vgg in ("vgg11", "vgg13", "vgg16", "vgg19"):
    MODELS.add(_vgg, "models.vgg:vgg_bn", f"CIFAR {_vgg.upper()} with BatchNorm", cfg=_vgg)
MODELS.add(
    "vgg16-lottery",
    "models.vgg:vgg16_lottery",
    "seed studies' VGG16: conv with bias, no BN, average-pooled head (313,478,154 FLOPs)",
)
for _depth in (20, 32, 56, 110):
    MODELS.add(
        f"resnet{_depth}",
        "models.resnet_cifar:cifar_resnet",
        f"CIFAR ResNet-{_depth} (3 stages of 16/32/64 channels)",
        depth=_depth,
    )
MODELS.add("resnet18", "models.resnet_cifar:resnet18", "ResNet-18 (torchvision blocks) with a CIFAR stem")
MODELS.add("resnet50", "models.resnet_cifar:resnet50", "ResNet-50 (torchvision blocks) with a CIFAR stem")
MODELS.add(
    "tv:",
    "models.torchvision_models:torchvision_model",
    "any torchvision classifier, e.g. tv:mobilenet_v2 "
    "(the names of torchvision.models.list_models(module=torchvision.models))",
)
MODELS.add(
    "timm:",
    "models.timm_models:timm_model",
    "any timm model, e.g. timm:resnet18 (optional extra: pip install 'filterprune[timm]')",
)
MODELS.add(
    "yolo:",
    "models.yolo:yolo_model",
    "ultralytics YOLO detector from its yaml, e.g. yolo:yolov8n.yaml, yolo:yolo11n.yaml or yolo:my.yaml "
    "(task detection; optional extra: pip install 'filterprune[yolo]')",
    "detection",
)

# datasets: a loader fn(root) -> ImageData; prefixed ones take the path; detection folders -> DetectionData
DATASETS.add(
    "digits",
    "data.embedded:digits",
    "embedded real dataset (scikit-learn digits, 32x32x3); needs no file or network",
)
DATASETS.add(
    "synthetic",
    "data.synthetic:synthetic",
    "random 3xNxN images at the model's input size, 10 classes (shapes only; no learnable signal)",
)
DATASETS.add("npz:", "data.files:npz", "npz:PATH with x_train/y_train/x_test/y_test (uint8 NCHW) or x/y")
DATASETS.add(
    "imagefolder:",
    "data.files:imagefolder",
    "imagefolder:PATH with PATH/train/<class>/* and PATH/test|val/<class>/*, "
    "streamed from disk at --image-size",
)
DATASETS.add(
    "coco:",
    "data.coco:coco",
    "coco:DIR with DIR/train|test/annotations.json + images/ (detection: boxes per image)",
    "detection",
)
DATASETS.add(
    "yolo:",
    "data.yolo:yolo",
    "yolo:DIR with DIR/data.yaml and DIR/train|test/images + labels/*.txt (detection)",
    "detection",
)
DATASETS.add(
    "masks:",
    "data.segmentation:masks",
    "masks:DIR with DIR/classes.txt, DIR/images/train|test/* and DIR/masks/train|test/*.png "
    "(segmentation: a class index per pixel, 255 ignored)",
    "segmentation",
)
for _set in ("cifar10", "cifar100", "mnist", "fashion-mnist", "svhn"):
    DATASETS.add(
        _set,
        "data.torchvision_sets:load",
        f"{_set} from --data-root (torchvision layout or {_set}.npz)",
        name=_set,
    )

# criteria: a Criterion subclass (structured: scores channels; mask: an unstructured mask -> channel saliency)
CRITERIA.add("l1", "criteria.structured.l1:L1", "L1 norm of the conv's own filter (Li et al. 2017)")
CRITERIA.add(
    "magnitude",
    "criteria.structured.magnitude:Magnitude",
    "group L2 norm over all coupled parameters, mean over layers",
)
CRITERIA.add(
    "slimming",
    "criteria.structured.slimming:Slimming",
    "|gamma| of the following BatchNorm, global threshold (Liu et al. 2017)",
)
CRITERIA.add(
    "greedy",
    "criteria.structured.greedy:Greedy",
    "lowest output norm in the current network, re-measured (Lajić et al. 2025)",
)
CRITERIA.add(
    "taylor",
    "criteria.structured.taylor:Taylor",
    "first-order Taylor |w * dL/dw| per channel on the calibration loss (Molchanov et al. 2019)",
)
CRITERIA.add(
    "random",
    "criteria.structured.random:Random",
    "uniformly random channels (the baseline every study needs)",
)
CRITERIA.add(
    "snip",
    "criteria.mask.snip:Snip",
    "SNIP |g*w| mask at compression c -> channel saliency (Lee et al. 2019)",
)
CRITERIA.add(
    "grasp",
    "criteria.mask.grasp:Grasp",
    "GraSP w*Hg keep-score (logits/200) mask -> channel saliency (Wang et al. 2020)",
)
CRITERIA.add(
    "synflow",
    "criteria.mask.synflow:SynFlow",
    "SynFlow data-free iterative mask (100 rounds) -> channel saliency (Tanaka et al. 2020)",
)
CRITERIA.add(
    "imp",
    "criteria.mask.imp:IMP",
    "Iterative Magnitude Pruning with rewinding (--imp-iterations) -> channel saliency",
)
CRITERIA.add(
    "mag",
    "criteria.mask.magnitude:Mag",
    "unstructured |w| mask at compression c -> channel saliency",
)
CRITERIA.add(
    "rand",
    "criteria.mask.random:Rand",
    "random unstructured mask at compression c -> channel saliency",
)

# tasks: a Task subclass (loss of a batch, evaluation, distillation, example input, what is exported)
TASKS.add(
    "classification",
    "tasks.classification:Classification",
    "one class label per image: cross-entropy (distilled from the dense model), top-1/top-5",
)
TASKS.add(
    "detection",
    "tasks.detection:Detection",
    "boxes per image (coco:/yolo: folders; torchvision detectors, ultralytics YOLO): the model's own loss "
    "(single-stage heads distilled from the dense model), mAP@0.5:0.95 and mAP@0.5 (pycocotools)",
)
TASKS.add(
    "segmentation",
    "tasks.segmentation:Segmentation",
    "a class per pixel (masks: folders; torchvision segmenters): per-pixel cross-entropy (distilled from "
    "the dense model), mIoU and pixel accuracy",
)

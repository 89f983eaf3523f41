"""The options of every command, defined once, in groups that own their defaults, help and checks.

``Model``, ``Data``, ``Train`` (the baseline), ``Finetune``, ``Prune`` (criterion and ``Target``),
``MaskOptions`` (the mask criteria's own), ``ImpOptions`` (criterion imp's), ``Bench`` and ``Output``
compose ``CompressConfig``; ``Export`` is ``filterprune export``'s. The flags of ``compress``, ``train``,
``bench`` and ``export``, the sweep files' keys and the Python keywords are generated from these fields
(``options.py``), so a knob has one name and one default everywhere. A new option is one field here;
one that only some criteria read is ``per_criterion`` and named in those criteria's ``reads``. Importing
this module is cheap (no torch); checks that need a registry import it when they run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import limits, safeload
from . import options as opt
from .catalog import CRITERIA, DATASETS, TASKS
from .errors import UsageError
from .masks import MaskConfig
from .options import all_at_least, in_range, int_list, option, round_to, str_list
from .recipes import RECIPES
from .targets import KINDS, Target, target_of

DEFAULT_DATA_ROOT = "data"
DISTILL = ("anneal", "kd", "off")
SCOPES = ("layerwise", "global")
TARGET_RUNTIMES = ("onnxruntime", "openvino", "torch", "torch:cuda")
OPSETS = range(9, 21)  # what torch's TorchScript exporter writes
PRECISIONS = ("fp32", "bf16", "int8")  # fp32/int8: ONNX files; bf16: OpenVINO computing an fp32 file in bf16
TARGET_PRECISIONS = {  # what each target runtime can plan on (int8: the QDQ file of export/quantize.py)
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
    "torch": ("fp32",),
    "torch:cuda": ("fp32",),
}


def _criteria():
    """The criteria package, imported when a criterion is checked."""
    from . import criteria  # imports torch: the config stays torch-free until a value is checked

    return criteria


TASK_DATA = {
    "classification": "one class label per image (imagefolder:, npz:, cifar10, ...)",
    "detection": "boxes per image (coco:DIR, yolo:DIR)",
    "segmentation": "a class per pixel (masks:DIR)",
}


def check_task(name: str | None, task: str = "classification", key: str = "dataset") -> None:
    """Refuse a dataset whose catalog ``task`` tag is not the run's task (an untagged dataset serves
    classification). (The messages avoid the words ``key`` and ``task`` elsewhere: the command line
    turns them into flags.)"""
    if name is None:
        if task != "classification":
            raise UsageError(f"task {task} needs a {key}: {TASK_DATA.get(task, 'its own')}", (key, "task"))
        return
    serves = DATASETS.task(name) or "classification"
    if serves != task:
        what = TASK_DATA.get(serves, f"{serves} data").split(" (")[0]
        raise UsageError(
            f"{key} {limits.printable(name, 200)}: {DATASETS.split(name)[0]} is a {serves} set ({what}); "
            f"{task} needs {TASK_DATA.get(task, 'its own data')}: pass task {serves}",
            (key, "task"),
        )


def check_classification(name: str, key: str = "dataset") -> None:
    """``check_task`` for the classification task (the in-memory and folder loaders call it)."""
    check_task(name, "classification", key)


def _registered(registry: str):
    """A check that the value names an entry of a registry (imported only when checked)."""

    def check(key: str, value) -> None:
        if registry == "recipes":
            if value not in RECIPES:
                raise UsageError(f"unknown {key} {value!r}; valid: {', '.join(RECIPES)}", (key,))
        else:
            {"criteria": CRITERIA, "datasets": DATASETS, "tasks": TASKS}[registry].check(value)

    return check


def _existing_path(key: str, value) -> None:
    p = Path(value)
    if not p.exists():
        raise UsageError(f"{key} not found: {value}", (key,))
    if not (p.is_file() or p.is_dir()):
        raise UsageError(f"{key} is not a regular file or folder: {value}", (key,))


def _model_args(key: str, value) -> None:
    """Keyword arguments that the run's report and checkpoint can hold and our readers take back: a JSON
    object within ``safeload``'s bounds (refused here, before training, not by a reader afterwards)."""
    args = opt.json_object(value) if isinstance(value, str) else value
    if not isinstance(args, dict):
        raise UsageError(
            f"{key} must be a JSON object (a dict of keyword arguments), got a {type(args).__name__}", (key,)
        )
    try:
        safeload.check_writable(args, safeload.MAX_ARGS_BYTES)
    except ValueError as e:
        raise UsageError(f"{key} refused: {e}", (key,)) from None


def _nonneg(key, v):
    in_range(0, integer=True)(key, v)


def _positive(key, v):
    in_range(1, integer=True)(key, v)


def _precisions(key: str, values) -> None:
    if not values:
        raise UsageError(f"{key} needs at least one of {', '.join(PRECISIONS)}", (key,))
    bad = [p for p in values if p not in PRECISIONS]
    if bad:
        raise UsageError(f"unknown {key} {bad[0]!r}; valid: {', '.join(PRECISIONS)}", (key,))
    twice = next((p for p in values if values.count(p) > 1), None)
    if twice:
        raise UsageError(f"{key} lists {twice} twice", (key,))


def check_target_precision(precision: str, runtime: str) -> None:
    """``precision`` is one that ``runtime`` can run (what a plan's settings are checked for)."""
    if precision not in TARGET_PRECISIONS.get(runtime, ("fp32",)):
        valid = [r for r, ps in TARGET_PRECISIONS.items() if precision in ps]
        raise UsageError(
            f"target_precision {precision} does not run on target_runtime {runtime} (it runs "
            f"{', '.join(TARGET_PRECISIONS.get(runtime, ('fp32',)))}); {precision} runs on "
            f"{' or '.join(valid)}",
            ("target_precision", "target_runtime"),
        )


@dataclass(frozen=True)
class Model:
    name: str = option(
        help="model: a registered name (`filterprune list models`), tv:<name>, timm:<name>, or your "
        "own factory path/to/file.py:fn or package.module:fn",
        key="model",
        positional=True,
    )
    model_args: dict | None = option(
        None,
        "keyword arguments for the model's factory or builder, a JSON object",
        parse=opt.json_arg,
        metavar="JSON",
        check=_model_args,
    )
    weights: str | None = option(
        None,
        "tv:/timm: pretrained weights, DEFAULT or an enum name (e.g. IMAGENET1K_V1), "
        "read from the local torch hub / timm cache (nothing is downloaded)",
        metavar="NAME",
    )
    checkpoint: str | None = option(
        None,
        "dense weights to prune instead of training a baseline (filterprune "
        "checkpoint, .safetensors, .pt/.pth)",
        check=_existing_path,
    )
    ignore_layers: tuple[str, ...] = option(
        (),
        "layers (module names) to keep whole besides the output layers",
        parse=str_list,
        metavar="NAME,...",
    )

    def validate(self) -> None:
        from .models.refs import validate_model  # imports torch (see _criteria)

        opt.check_fields(self)
        validate_model(self)


@dataclass(frozen=True)
class Data:
    dataset: str | None = option(
        None,
        "dataset name (default: cifar10 if found under --data-root, else the embedded digits)",
        check=_registered("datasets"),
    )
    data_root: str = option(DEFAULT_DATA_ROOT, "folder holding datasets")
    image_size: int | None = option(
        None,
        "imagefolder: input side (default: the model's native input, 224 for "
        "ImageNet tv/timm models, 32 for the CIFAR ones)",
        metavar="N",
        check=_positive,
    )
    train_subset: int | None = option(
        None, "imagefolder: train on a seeded random subset of N images", metavar="N", check=_positive
    )
    workers: int | None = option(
        None,
        "imagefolder: DataLoader worker processes (default: min(4, CPUs))",
        metavar="N",
        check=in_range(0, limits.MAX_WORKERS, integer=True),
    )
    val_fraction: float = option(
        0.1,
        "fraction of the training images held out (per class, drawn with --seed) to "
        "choose the kept epoch; never the test split; 0 = keep the last epoch",
        check=in_range(0, 0.5),
    )
    task: str = option(
        "classification",
        "what the model does with the images: classification (one label per image), detection "
        "(boxes per image: coco:/yolo: folders, tv: detectors) or segmentation (a class per pixel: "
        "masks: folders, tv: segmenters)",
        check=_registered("tasks"),
    )

    def validate(self) -> None:
        opt.check_fields(self)
        check_task(self.dataset, self.task)


@dataclass(frozen=True)
class Train:
    """The dense baseline's training (and the seed of the whole run)."""

    epochs: int = option(
        8, "baseline training epochs (0 = untrained model); also the default finetune budget", check=_nonneg
    )
    batch_size: int = option(
        64, "training batch size (the global batch under --distributed)", check=_positive
    )
    optimizer: str = option("sgd", "baseline optimizer", choices=("sgd", "adam"))
    lr: float | None = option(
        None,
        "baseline learning rate (default: 0.02 sgd, 1e-3 adam)",
        check=in_range(0, 10, lo_open=True, hi_open=True),
    )
    schedule: str = option("cosine", "learning-rate schedule", choices=("step", "cosine"))
    sparsity_reg: float = option(
        0.0, "network-slimming L1 strength on BN scales during baseline training", check=in_range(0)
    )
    sparsity_epochs: int = option(
        0, "sparsity-train the --checkpoint for N epochs with --sparsity-reg before pruning", check=_nonneg
    )
    device: str = option("auto", "auto, cpu or cuda")
    seed: int = option(
        0,
        "seed of the baseline, the validation split, random criteria and augmentations",
        check=in_range(-(2**63), 2**63 - 1, integer=True),
    )
    distributed: bool = option(
        False,
        "DDP training under torchrun (--batch-size is then the global batch): "
        "torchrun --nproc_per_node N -m filterprune ... --distributed",
    )

    def validate(self) -> None:
        opt.check_fields(self)

    def train_config(self):
        """The training loop's settings for the baseline."""
        from .train import TrainConfig  # imports torch (see _criteria)

        return TrainConfig(
            epochs=self.epochs,
            optimizer=self.optimizer,
            lr=self.lr,
            schedule=self.schedule,
            batch_size=self.batch_size,
            sparsity_reg=self.sparsity_reg,
            seed=self.seed,
        )


@dataclass(frozen=True)
class Finetune:
    recipe: str = option(
        "default",
        "finetune preset: default (the baseline's optimizer and schedule at half its lr, "
        "warm-up, as many epochs as --epochs, at least 8), lajic (the seed study's: SGD "
        "1e-3 -> 1e-4 -> 1e-5, batch 32, rotation + flip, 10 epochs / 20 for 100 "
        "classes) or plain (a tenth of the baseline lr, 3 epochs)",
        check=_registered("recipes"),
    )
    epochs: int | None = option(
        None,
        "default: the recipe's (default: as many as --epochs, at least 8; lajic: 10)",
        key="finetune_epochs",
        check=_nonneg,
    )
    lr: float | None = option(
        None,
        "default: the recipe's (half the baseline lr; lajic: 1e-3)",
        key="finetune_lr",
        check=in_range(0, 10, lo_open=True, hi_open=True),
    )
    distill: str = option(
        "anneal",
        "finetuning distills from the dense model: anneal (default): the teacher's "
        "weight falls linearly from --distill-alpha to 0 over the finetune; kd: constant "
        "weight; off: plain cross-entropy",
        choices=DISTILL,
    )
    distill_alpha: float = option(
        0.7, "weight of the dense model's soft targets in [0, 1]", check=in_range(0, 1)
    )
    distill_temperature: float = option(4.0, "softmax temperature > 0", check=in_range(0, lo_open=True))
    scratch: bool = option(
        False, "control: also train the pruned architecture from a fresh init for the same total epochs"
    )

    def validate(self) -> None:
        opt.check_fields(self)


@dataclass(frozen=True)
class Prune:
    criterion: str = option(
        help="channel criterion (see `filterprune list criteria`)", check=_registered("criteria")
    )
    sparsity: float | None = option(
        None,
        "fraction of channels to remove, in [0, 1) (or one of --target-macs, "
        "--target-speedup, --target-latency)",
    )
    target_macs: float | None = option(
        None, "prune until MACs <= F x dense, F in (0, 1] (instead of --sparsity)", metavar="F"
    )
    target_speedup: float | None = option(
        None,
        "instead of --sparsity: prune until the pruned model runs X times "
        "faster than the dense one, measured on --target-runtime at "
        "--target-batch",
        metavar="X",
    )
    target_latency: float | None = option(
        None,
        "instead of --sparsity: prune until one call takes MS milliseconds on --target-runtime",
        metavar="MS",
    )
    scope: str | None = option(
        None,
        "allocation (default: the criterion's own: slimming and the mask criteria global, others layerwise)",
        choices=SCOPES,
    )
    round_to: int | str = option(
        16,
        "round kept channels to a multiple of K (default 16: the widths fp32 and int8 CPU kernels and GPU "
        "tensor cores run fast; 1 = exact counts), or 'auto': widths chosen from latencies measured on "
        "--target-runtime at --target-batch and --target-precision",
        parse=round_to,
        metavar="K|auto",
    )
    layer_floor: float = option(
        0.1, "each layer keeps at least this fraction of its channels", check=in_range(0, 1, lo_open=True)
    )
    steps: int = option(1, "reach the target in K prune -> finetune cycles", metavar="K", check=_positive)
    calib_batches: int = option(
        8,
        "training batches for data-driven criteria (greedy, snip, grasp, taylor)",
        check=_positive,
        per_criterion=True,
    )
    mode: str = option(
        "shrink",
        "shrink: remove channels (and time the masked model as a control); masked: only "
        "zero weights (mask criteria)",
        choices=("shrink", "masked"),
    )
    target_runtime: str = option(
        "onnxruntime",
        "where --target-speedup/--target-latency and --round-to auto measure: "
        "onnxruntime, openvino (latency targets), torch, torch:cuda",
        choices=TARGET_RUNTIMES,
    )
    target_precision: str = option(
        "fp32",
        "the precision --target-speedup/--target-latency and --round-to auto plan and time the widths "
        "at: fp32, int8 (the INT8 QDQ files on onnxruntime or openvino; adds int8 to --precision, so "
        "the INT8 files are written and timed), bf16 (openvino, where the CPU has it)",
        choices=PRECISIONS,
    )
    target_batch: int = option(64, "batch size of those measurements", check=_positive)
    threads: int | None = option(
        None, "threads of those measurements (default: torch's, i.e. the cores)", check=_positive
    )

    @property
    def target(self) -> Target:
        return target_of(**{k: getattr(self, k) for k in KINDS})

    def validate(self) -> None:
        opt.check_fields(self)
        target = self.target
        if self.round_to != "auto" and not (
            isinstance(self.round_to, int) and not isinstance(self.round_to, bool) and self.round_to >= 1
        ):
            raise UsageError(
                f"round_to must be an integer >= 1 or 'auto', got {self.round_to!r}", ("round_to",)
            )
        if self.target_runtime == "openvino" and self.round_to == "auto" and not target.measured:
            raise UsageError(
                "round_to auto measures onnxruntime, torch or torch:cuda; for OpenVINO use "
                "target_speedup / target_latency",
                ("round_to", "target_speedup", "target_latency"),
            )
        if self.target_runtime == "torch:cuda":
            import torch  # only this choice needs it

            if not torch.cuda.is_available():
                raise UsageError(
                    "target_runtime torch:cuda needs a CUDA GPU, and none is available", ("target_runtime",)
                )
        target.steps(self.steps)  # a latency target refuses steps > 1
        self._check_precision(target)
        if self.mode == "masked":
            criteria = _criteria()
            if not issubclass(criteria.CRITERIA.get(self.criterion), criteria.MaskCriterion):
                raise UsageError(
                    f"mode masked needs a mask criterion (grasp, imp, mag, rand, snip, synflow), "
                    f"not {self.criterion!r}",
                    ("mode",),
                )

    def _check_precision(self, target: Target) -> None:
        """A target precision other than fp32 plans measured widths (a measured target, or round_to auto's
        latency table), on a runtime that has it."""
        p, runtime = self.target_precision, self.target_runtime
        if p == "fp32":
            return
        if not target.measured and self.round_to != "auto":
            raise UsageError(
                f"target_precision {p} plans the widths of target_speedup, target_latency or round_to "
                "auto; give one of them (or leave target_precision fp32)",
                ("target_precision", "target_speedup", "target_latency", "round_to"),
            )
        check_target_precision(p, runtime)
        if p == "int8":
            try:
                import onnxruntime.quantization  # noqa: F401 - the quantizer (a minimal build lacks it)
            except ImportError:
                raise UsageError(
                    "target_precision int8 quantizes with onnxruntime.quantization, which this "
                    "onnxruntime lacks: pip install onnxruntime",
                    ("target_precision",),
                ) from None
        if p == "bf16":
            from .benchmarking import runners  # imports torch and OpenVINO: only this choice needs them

            if not runners.ov_has_bf16():
                raise UsageError(
                    "target_precision bf16: this CPU has no bfloat16 support in OpenVINO (AVX-512 BF16 "
                    "or AMX)",
                    ("target_precision",),
                )

    def plan(self, scope: str):
        """The allocation's settings (``scope``: the given one, or the criterion's own)."""
        from .pruning.plan import PlanConfig  # imports torch (see _criteria)

        return PlanConfig(
            self.target,
            scope,
            self.round_to,
            self.layer_floor,
            target_runtime=self.target_runtime,
            target_batch=self.target_batch,
            threads=limits.cap_threads(self.threads),
            target_precision=self.target_precision,
        )


@dataclass(frozen=True)
class MaskOptions:
    """The mask criteria's own options (snip, grasp, synflow, mag, rand, imp); others ignore them."""

    compression: float | None = option(
        None,
        "mask keeps 10^-c of the weights (default: tied to the target: -2*log10(1-sparsity), 0.444 at s=0.4)",
        check=in_range(0),
        per_criterion=True,
    )
    mask_scope: str = option(
        "global", "one mask threshold network-wide, or per layer", choices=SCOPES[::-1], per_criterion=True
    )
    mask_reduce: str = option(
        "density",
        "channel saliency: fraction of the filter the mask keeps, or its kept score sum",
        choices=("density", "sum"),
        per_criterion=True,
    )

    def validate(self) -> None:
        opt.check_fields(self)


@dataclass(frozen=True)
class ImpOptions:
    """Iterative Magnitude Pruning's own options (criterion imp)."""

    imp_iterations: int = option(2, "train-prune-rewind cycles", check=_positive, per_criterion=True)
    imp_epochs: int | None = option(
        None, "training epochs per cycle (default: the finetune epochs)", check=_nonneg, per_criterion=True
    )

    def validate(self) -> None:
        opt.check_fields(self)


@dataclass(frozen=True)
class Bench:
    """The latency benchmark: the same defaults for ``compress`` and ``filterprune bench``."""

    batch_sizes: tuple[int, ...] = option(
        (1, 32),
        "batch sizes of the benchmark, comma-separated",
        key="bench_batch_sizes",
        parse=int_list,
        metavar="B,...",
        check=all_at_least(1),
    )
    iters: int = option(20, "timed calls per variant and batch size", key="bench_iters", check=_positive)
    warmup: int = option(3, "untimed calls before timing", key="bench_warmup", check=_nonneg)
    memory: bool = option(
        False,
        "also record CPU peak RSS per variant (a fresh process per row, a few seconds each)",
        key="bench_memory",
    )
    precision: tuple[str, ...] = option(
        ("fp32",),
        "precisions of the deployed files and timings, comma-separated: fp32, int8 "
        "(model.int8.onnx and dense.int8.onnx: onnxruntime static quantization), bf16 (OpenVINO "
        "computing the fp32 files in bfloat16, where the CPU has it)",
        parse=str_list,
        metavar="P,...",
        check=_precisions,
    )
    calib_images: int = option(
        256,
        "int8: calibration images, a seeded random draw from the training split",
        metavar="N",
        check=_positive,
    )
    max_int8_drop: float = option(
        1.0,
        "int8: warn when an INT8 file loses more than this many top-1 points against its FP32 file",
        metavar="POINTS",
        check=in_range(0),
    )

    def validate(self) -> None:
        opt.check_fields(self)


@dataclass(frozen=True)
class Output:
    out: str | None = option(None, "output folder (default: a new folder under runs/ named after the run)")
    overwrite: bool = option(False, "replace an existing, non-empty --out")
    export: bool = option(True, "skip ONNX export (and onnxruntime timing)", negate="--no-export")
    bench: bool = option(True, "skip the latency benchmark", negate="--no-bench")

    def validate(self) -> None:
        opt.check_fields(self)


@dataclass(frozen=True)
class Export:
    """``filterprune export``'s options."""

    source: str = option(help="run folder (from compress), X.json or X.safetensors", positional=True)
    out: str = option(help="the .onnx file to write")
    opset: int = option(
        18,
        "ONNX opset (18+: torch's torch.export-based exporter where onnxscript is "
        "installed, else its TorchScript exporter)",
        metavar="N",
    )
    batch: int | None = option(None, "'dynamic' (default) or a fixed batch size", parse=opt.batch_or_dynamic)
    fp16: bool = option(False, "half-precision weights, inputs and outputs")
    simplify: bool = option(False, "simplify with onnxslim (parity re-checked)")
    overwrite: bool = option(False, "replace an existing --out")

    def validate(self) -> None:
        opt.check_fields(self)
        if not Path(self.source).exists():
            raise UsageError(f"not found: {self.source}")
        if self.opset not in OPSETS:
            raise UsageError(
                f"opset must be in {OPSETS.start}..{OPSETS.stop - 1}, got {self.opset}", ("opset",)
            )
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"batch must be 'dynamic' or an integer >= 1, got {self.batch}", ("batch",))
        out = Path(self.out)
        if out.is_dir():
            raise UsageError(f"out {out} is a folder; give a file name such as model.onnx", ("out",))
        if out.exists() and not self.overwrite:
            raise UsageError(f"{out} already exists (pass overwrite to replace it)", ("overwrite",))


GROUPS = {
    "model": Model,
    "data": Data,
    "train": Train,
    "finetune": Finetune,
    "prune": Prune,
    "mask": MaskOptions,
    "imp": ImpOptions,
    "bench": Bench,
    "output": Output,
}
TITLES = {
    "model": "model",
    "data": "data",
    "train": "baseline training",
    "finetune": "finetuning",
    "prune": "pruning",
    "mask": "mask criteria (snip, grasp, synflow, mag, rand, imp)",
    "imp": "criterion imp (train, prune, rewind)",
    "bench": "benchmark",
    "output": "output",
}


@dataclass(frozen=True)
class CompressConfig:
    """``filterprune compress``: one field per group. Build it from keys with ``CompressConfig.of(...)``."""

    model: Model
    prune: Prune
    data: Data = field(default_factory=Data)
    train: Train = field(default_factory=Train)
    finetune: Finetune = field(default_factory=Finetune)
    mask: MaskOptions = field(default_factory=MaskOptions)
    imp: ImpOptions = field(default_factory=ImpOptions)
    bench: Bench = field(default_factory=Bench)
    output: Output = field(default_factory=Output)

    @classmethod
    def of(cls, **values) -> CompressConfig:
        """From keys (``model="vgg16", criterion="l1", sparsity=0.4, epochs=2``): the flags' names
        with '_'."""
        keys = all_keys()
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise UsageError(f"unknown option {unknown[0]!r}")
        missing = [k for k in ("model", "criterion") if values.get(k) is None]
        if missing:
            raise UsageError(f"missing {missing[0]}", (missing[0],))
        return cls(
            **{
                name: opt.from_flat(group, {k: v for k, v in values.items() if keys[k] == name})
                for name, group in GROUPS.items()
            }
        )

    @classmethod
    def defaults(cls) -> dict:
        """key -> default of every option that has one."""
        return {
            opt.key_of(f): f.default
            for g in GROUPS.values()
            for f in opt.options(g)
            if f.default is not dataclasses.MISSING
        }

    def flat(self) -> dict:
        """key -> value (what report.json's ``config`` and a sweep's run records hold)."""
        return {k: v for name in GROUPS for k, v in opt.to_flat(getattr(self, name)).items()}

    def with_values(self, **values) -> CompressConfig:
        """A copy with some keys changed."""
        return CompressConfig.of(**{**self.flat(), **values})

    @property
    def target(self) -> Target:
        return self.prune.target

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions the run's files are written and timed at: ``precision``, and the target's (a plan
        for the INT8 kernels is checked on the INT8 files) when the run exports."""
        asked, planned = self.bench.precision, self.prune.target_precision
        if planned == "fp32" or planned in asked or not self.output.export:
            return tuple(asked)
        return (*asked, planned)

    def validate(self) -> None:
        """Every check that needs no training: each group's own, then those across groups."""
        for name in GROUPS:
            getattr(self, name).validate()
        self.check_task()
        t, m = self.train, self.model
        if t.sparsity_epochs and (m.checkpoint is None or not t.sparsity_reg):
            raise UsageError(
                "sparsity_epochs trains a given checkpoint with sparsity_reg > 0 (without checkpoint, "
                "sparsity_reg already acts while the baseline trains)",
                ("sparsity_epochs", "checkpoint", "sparsity_reg"),
            )
        if m.checkpoint is not None and t.sparsity_reg and not t.sparsity_epochs:
            raise UsageError(
                "sparsity_reg with checkpoint needs sparsity_epochs N (the sparsity training of the "
                "given model before pruning)",
                ("sparsity_reg", "checkpoint", "sparsity_epochs"),
            )
        if m.weights is not None and m.checkpoint is not None:
            raise UsageError("give either weights or checkpoint, not both", ("weights", "checkpoint"))
        precision = self.bench.precision
        if "bf16" in precision:
            raise UsageError(
                "precision bf16 is OpenVINO's (compress times PyTorch and onnxruntime): time "
                "the run with `filterprune bench RUN --runtime openvino --precision fp32,bf16`",
                ("precision",),
            )
        if "int8" in precision and not self.output.export:
            raise UsageError(
                "precision int8 quantizes the exported ONNX files, and this run skips the "
                "export (--no-export / export=False)",
                ("precision",),
            )

    def check_task(self) -> None:
        """The model and the other options fit the task (``Task.check_model_name``, ``check_config``)."""
        from .tasks import make_task  # imports torch (see _criteria)

        task = make_task(self.data.task)
        task.check_model_name(self.model.name)
        task.check_config(self)

    def ignored(self) -> list[str]:
        """Criterion-specific options given a value other than their default that the chosen criterion
        does not read (``Criterion.reads``): worth a warning, not a refusal — a sweep sets them for a
        grid of criteria."""
        reads = set(getattr(_criteria().CRITERIA.get(self.prune.criterion), "reads", ()))
        return [
            opt.key_of(f)
            for name in GROUPS
            for f in opt.options(GROUPS[name])
            if f.metadata["per_criterion"]
            and opt.key_of(f) not in reads
            and getattr(getattr(self, name), f.name) != f.default
        ]

    def baseline_config(self):
        return self.train.train_config()

    def baseline_identity(self) -> dict | None:
        """The options that decide the trained dense baseline (None: none is trained). The cache key
        (``baseline.baseline_key``) hashes what these resolve to: the spec, the data and the split."""
        m, d = self.model, self.data
        if m.checkpoint is not None or self.train.epochs == 0:
            return None
        return {
            "model": m.name,
            "model_args": m.model_args,
            "weights": m.weights,
            "dataset": d.dataset,
            "data_root": d.data_root,
            "image_size": d.image_size,
            "train_subset": d.train_subset,
            "val_fraction": d.val_fraction,
            "device": self.train.device,
            "train": self.baseline_config().to_dict(),
        }

    def finetune_config(self, num_classes: int = 10):
        """The recipe's finetune settings, with the options that were given taking precedence."""
        f = self.finetune
        r, base = RECIPES[f.recipe], self.baseline_config()
        lr = f.lr if f.lr is not None else r.lr if r.lr is not None else r.lr_factor * base.learning_rate
        epochs = f.epochs if f.epochs is not None else r.finetune_epochs(num_classes, self.train.epochs)
        return replace(
            base,
            epochs=epochs,
            lr=lr,
            optimizer=r.optimizer or base.optimizer,
            schedule=r.schedule or base.schedule,
            batch_size=r.batch_size or base.batch_size,
            crop=r.crop,
            weight_decay=r.weight_decay,
            warmup_epochs=min(r.warmup_epochs, epochs),
            label_smoothing=r.label_smoothing,
            sparsity_reg=0.0,
            distill_alpha=f.distill_alpha if f.distill != "off" else 0.0,
            distill_temperature=f.distill_temperature,
            distill_anneal=f.distill == "anneal",
        )

    def scratch_config(self, num_classes: int):
        """Liu et al.'s control: the baseline's recipe for the run's total epochs (baseline + finetuning)."""
        ft = self.finetune_config(num_classes)
        return replace(self.baseline_config(), epochs=self.train.epochs + ft.epochs * self.prune.steps)

    def mask_config(self, num_classes: int = 10):
        m, i = self.mask, self.imp
        ft = self.finetune_config(num_classes)  # IMP trains the seed's way: no teacher
        imp_train = replace(ft, epochs=ft.epochs if i.imp_epochs is None else i.imp_epochs, distill_alpha=0.0)
        c = m.compression if m.compression is not None else self.target.compression()
        return MaskConfig(c, m.mask_scope, m.mask_reduce, i.imp_iterations, imp_train)


def all_keys() -> dict[str, str]:
    """key -> the name of the group that owns it (every key belongs to exactly one group)."""
    return {opt.key_of(f): name for name, g in GROUPS.items() for f in opt.options(g)}


def key_hints() -> dict[str, object]:
    """key -> the type a value must have (what a sweep file's value is coerced to)."""
    return {k: h for g in GROUPS.values() for k, h in opt.hints(g).items()}


def check_value(key: str, value) -> None:
    """One key's own checks on one value (what a sweep checks before expanding its grid)."""
    group = GROUPS[all_keys()[key]]
    (f,) = [f for f in opt.options(group) if opt.key_of(f) == key]
    opt.check_value(f, value)
    if key in KINDS and value is not None:
        KINDS[key](value)

"""report.json's schema: the one description of a run's report that ``compress`` writes and every reader
(``filterprune report``, the sweep's results table, the benchmarks) reads through ``read_report``, so a
renamed or misspelt key is a type checker's error or one clear line instead of a silent default.

``schema_version`` is MAJOR.MINOR. A minor version only adds keys (a 1.x reader reads any 1.y report); a
major version renames or removes some (a reader refuses a newer major in one line). A report without
``schema_version`` was written before the schema existed and still reads (tests/fixtures/report-0.1.0.json).

Key rules: a required key is in every report this reader accepts; ``NotRequired`` marks a key that a
report may lack (reports from before the schema lack the ones marked so, later minors' keys are
``NotRequired`` too), and only such keys are read with ``.get``. A key whose value may be null says
``| None``. Imports nothing heavy (no torch, no pandas), so any reader can afford it.
"""

import functools
import re
import sys
import types
from pathlib import Path
from typing import Any, TypedDict, Union, cast, get_args, get_origin

from ..errors import RunError, UsageError
from ..fileio import read_small_json
from ..limits import show

if sys.version_info >= (3, 11):
    from typing import NotRequired, get_type_hints, is_typeddict
else:  # typing's TypedDict learnt NotRequired in 3.11
    from typing_extensions import NotRequired, TypedDict, get_type_hints, is_typeddict  # noqa: F811

SCHEMA_VERSION = "1.3"  # 1.1: deployed, latency precision, onnx exporter; 1.2: task, metrics;
# 1.3: latency_target precision
FILE = "report.json"
MAX_ROWS = 2_000  # layers or latency rows in one report (networks have hundreds of layers at most)


class Dataset(TypedDict):
    name: str
    source: str  # where the images came from, in words
    train: int  # images in each split
    val: NotRequired[int]  # absent before the validation split (0: none carved)
    test: int


class Costs(TypedDict):
    """``dense`` and ``pruned``: the model's size and its test-split accuracy (for a task other than
    classification, its first two metrics: see ``Metrics``)."""

    params: int
    macs: int
    flops: int  # the seed study's convention
    accuracy: float  # top-1, 0..1 (detection: mAP@0.5:0.95; segmentation: mIoU)
    top5: float  # (detection: mAP@0.5; segmentation: pixel accuracy)


class Metrics(TypedDict):
    """The task's metrics by name (1.2), on the test split: ``names`` key -> words, ``headline`` the key
    that chose the kept epoch (on the validation split) and heads the report."""

    headline: str
    names: dict[str, str]
    dense: dict[str, float | None]
    pruned: dict[str, float | None]


class Masked(TypedDict):
    """Mask criteria only: the masked control (dense shapes, the mask's weights zeroed)."""

    params: int
    macs: int
    flops: int  # seed FLOPs weighted by the mask's density
    nonzero_params: int
    flop_fraction: float  # of the dense seed FLOPs
    weight_density: float
    compression: float  # the mask's settings
    density: float
    scope: str
    reduce: str
    imp_iterations: int
    synflow_rounds: int
    accuracy: float
    top5: float
    finetune_history: list[dict[str, Any]]


class Layer(TypedDict):
    name: str
    channels_before: int
    channels_after: int


class Onnx(TypedDict):
    """The pruned model's export and its onnxruntime parity check."""

    path: str  # relative to the run folder
    max_abs_diff: float
    max_rel_diff: float
    output_scale: NotRequired[float]  # absent in some reports from before the schema
    batches: list[int]
    tolerance: float
    exporter: NotRequired[str]  # torch's exporter that wrote it: dynamo or torchscript (absent before 1.1)
    exporter_fallback: NotRequired[str]  # torchscript: why the torch.export-based exporter was not used


class DeployedFile(TypedDict):
    """One ONNX file's own accuracy: the file run by ``runtime`` over the test split."""

    variant: str  # dense or pruned
    precision: str  # fp32 or int8
    runtime: str
    path: str  # relative to the run folder
    top1: float  # 0..1
    top5: float
    images: int
    top1_drop_points: NotRequired[float]  # int8: the fp32 file's top-1 less this one's, in points


class Deployed(TypedDict):
    """The accuracy of what is deployed (1.1), beside the PyTorch accuracy of ``dense`` and ``pruned``."""

    files: list[DeployedFile]
    max_int8_drop: float  # points; a larger INT8 loss is in ``warnings``
    calibration: dict[str, Any] | None  # int8: images, seed, source, method; None without int8
    warnings: list[str]


class Latency(TypedDict):
    """The compact latency view: one row per runtime, device, precision and batch size."""

    runtime: str
    device: str
    precision: NotRequired[str]  # fp32, fp16, bf16 or int8 (absent before 1.1: fp32)
    batch_size: int
    dense_ms: float  # medians
    pruned_ms: float
    dense_p90_ms: float
    pruned_p90_ms: float
    speedup: float  # dense_ms / pruned_ms
    speedup_efficiency: NotRequired[float]  # speedup / theoretical speedup (absent in some older reports)
    speedup_vs_dense_fp32: NotRequired[float | str]  # dense fp32 ms / pruned ms ("" without an fp32 row)
    masked_ms: NotRequired[float]  # mask criteria only: the masked control timed in the same run
    masked_p90_ms: NotRequired[float]
    masked_speedup: NotRequired[float]


class LatencyRow(TypedDict):
    """One benchmark row, as in ``bench.csv``. A row that failed has ``error`` and no times; "" is "not
    measured" (GPU peaks off CUDA, CPU peak RSS without ``--bench-memory``)."""

    variant: str  # dense, pruned or masked
    runtime: str
    device: str
    precision: NotRequired[str]  # what the runtime computed in: fp32, fp16, bf16, int8 (before 1.1: fp32)
    batch_size: int
    params: NotRequired[int]
    macs: NotRequired[int]
    iters: NotRequired[int]
    threads: NotRequired[int]
    error: NotRequired[str]
    p50_ms: NotRequired[float]
    p90_ms: NotRequired[float]
    p99_ms: NotRequired[float]
    throughput: NotRequired[float]
    theoretical_speedup: NotRequired[float | str]
    speedup: NotRequired[float]  # against dense at the same precision
    speedup_vs_dense_fp32: NotRequired[float | str]
    speedup_efficiency: NotRequired[float]
    cpu_peak_rss_mb: NotRequired[float | str]
    gpu_peak_allocated_mb: NotRequired[float | str]
    gpu_peak_reserved_mb: NotRequired[float | str]
    machine_busy: NotRequired[str]  # why the machine was not quiet ("" when it was)


class Baseline(TypedDict, total=False):
    """Where the dense model came from: trained here (``epochs``, ``train``, ``history``, ``cache_key``,
    ``pretrained``), a ``--checkpoint`` (``sparsity_training``), or a module handed to compress
    (``given``): each run has the keys of its own source."""

    epochs: int
    train: dict[str, Any]  # the training configuration
    history: list[dict[str, Any]]
    cache_key: str
    pretrained: dict[str, Any]  # what was loaded into the model (tv:/timm: weights)
    checkpoint: str
    sparsity_training: dict[str, Any]
    given: str


class Finetune(TypedDict):
    config: dict[str, Any]  # the finetune training configuration
    recipe: NotRequired[str]  # absent before recipes
    distill: NotRequired[str]  # absent before distillation
    kept_epoch: NotRequired[int | None]  # the epoch whose weights were kept (absent before the val split)
    history: list[dict[str, Any]]  # one entry per epoch
    between_steps: NotRequired[list[Any]]  # --steps K: each earlier step's history


class Scratch(TypedDict):
    """``--scratch``: the pruned architecture trained from a fresh init."""

    epochs: int
    accuracy: float | None
    top5: float | None
    kept_epoch: int | None
    history: list[dict[str, Any]]


class Machine(TypedDict):
    cpu: str
    cores: int | None
    torch_threads: int
    python: str
    torch: str
    onnxruntime: str
    torch_pruning: str
    gpu: str | None


class ModelSource(TypedDict):
    """How to rebuild the dense model."""

    kind: str  # registered, torchvision, timm or factory
    name: str  # a factory: its file's absolute path
    args: dict[str, Any]
    weights: str | None
    checkpoint: str | None
    num_classes: int
    input_shape: list[int]
    code_sha256: NotRequired[str]  # a factory: its file's digest
    rebuild: NotRequired[str]  # a factory: how to load it
    weights_file: NotRequired[str]  # pretrained weights: the file read
    head_replaced: NotRequired[list[str]]  # pretrained weights: the keys left fresh (another class count)


# --target-speedup / --target-latency: asked vs measured, the candidates tried and the widths kept;
# with --steps K, {"steps": [one such record per step]}. Read only by report.md. Since 1.2 each record
# names its ``precision`` (--target-precision), and one planned at another precision than fp32 adds
# ``dense_fp32_ms``, ``speedup_vs_dense_fp32`` and ``dense_speedup_vs_fp32`` (timed beside the dense fp32
# file).
LatencyTarget = dict[str, Any]


class Report(TypedDict):
    """report.json (README: "What a run writes")."""

    schema_version: NotRequired[str]  # absent before the schema
    model: str
    criterion: str
    sparsity: float  # as asked, or as found for a MACs or latency target
    scope: str
    target_macs: NotRequired[float | None]  # absent before --target-macs
    steps: NotRequired[int]  # absent before --steps (one step)
    latency_target: NotRequired[LatencyTarget | None]  # absent before latency targets
    round_to: int | str
    seed: int
    device: str
    processes: NotRequired[int]  # absent before --distributed (one process)
    dataset: Dataset
    dense: Costs
    pruned: Costs
    task: NotRequired[str]  # classification, detection or segmentation (absent before 1.2: classification)
    metrics: NotRequired[Metrics]  # absent before 1.2
    mode: str  # shrink or masked
    masked: Masked | None  # mask criteria only
    theoretical_speedup: float  # dense MACs / pruned MACs
    channel_sparsity: float
    layers: list[Layer]
    skipped_groups: list[str]  # groups the criterion declined to score
    unprunable_groups: NotRequired[dict[str, str]]  # group -> why it was left whole; absent in older reports
    onnx: Onnx | None  # None: --no-export
    deployed: NotRequired[Deployed | None]  # None: --no-export; absent before 1.1
    latency: list[Latency]  # empty: --no-bench
    latency_rows: list[LatencyRow]
    baseline: Baseline
    finetune: Finetune
    scratch: NotRequired[Scratch | None]  # absent before --scratch
    timings_s: dict[str, float]  # seconds per stage
    machine: Machine
    version: str  # filterprune's
    model_source: NotRequired[ModelSource]  # absent in older reports
    config: dict[str, Any]  # the run's options as that filterprune version named them: read with .get


def read_report(path: str | Path) -> Report:
    """The report in a run folder (or a report.json's path), checked against the schema: RunError naming
    the file and the key when it is not a report, UsageError when a newer filterprune wrote it."""
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    return check(read_small_json(path, "or corrupt report"), path)


def check(doc: Any, where: str | Path) -> Report:
    """``doc`` as a Report, or one line saying why it is not one (``where`` names it)."""
    if not isinstance(doc, dict):
        raise RunError(f"{where}: not a filterprune compress report (a {type(doc).__name__}, not an object)")
    if "schema_version" in doc:  # else written before the schema
        _check_version(doc["schema_version"], where)
    bad = _missing(doc, Report, "") or _bad_value(doc)
    if bad:
        raise RunError(f"{where}: not a filterprune compress report ({bad})")
    return cast(Report, doc)


def _check_version(version: Any, where: str | Path) -> None:
    m = re.fullmatch(r"(\d{1,4})\.(\d{1,4})", version) if isinstance(version, str) else None
    if m is None:
        raise RunError(
            f"{where}: not a filterprune compress report (schema_version {show(version)} is not MAJOR.MINOR)"
        )
    major = int(SCHEMA_VERSION.split(".")[0])
    if int(m[1]) > major:
        raise UsageError(
            f"{where}: report.json schema {version} is newer than this filterprune reads "
            f"({major}.x); upgrade filterprune"
        )
    if int(m[1]) < major:
        raise RunError(f"{where}: not a filterprune compress report (schema {version}: the first is 1.0)")


def _bad_value(doc: dict) -> str | None:
    """The values the readers index by or count on (the rest reads as "not measured" when odd)."""
    layers, names = doc["layers"], (doc["model"], doc["criterion"])
    return (
        "model or criterion is not a name"
        if not all(isinstance(n, str) for n in names)
        else "seed is not an integer"
        if type(doc["seed"]) is not int
        else f"more than {MAX_ROWS:,} layers or latency rows"
        if any(len(doc[k]) > MAX_ROWS for k in ("layers", "latency_rows", "latency"))
        else "layers are not channel counts"
        if not all(
            isinstance(x["name"], str)
            and type(x["channels_before"]) is int
            and type(x["channels_after"]) is int
            for x in layers
        )
        else None
    )


def _missing(doc: dict, schema: type, prefix: str) -> str | None:
    """Why ``doc`` does not fit ``schema`` (a TypedDict): its first missing required key, or a section that
    is not an object or list, with its dotted path; None when it fits. Scalars are left to the readers
    (a number that is not one reads as "not measured")."""
    hints = _hints(schema)
    for key in hints:
        if key not in doc and key in schema.__required_keys__:  # type: ignore[attr-defined]
            return f"missing {prefix}{key}"
    for key, kind in hints.items():
        if key in doc:
            bad = _misfit(doc[key], kind, f"{prefix}{key}")
            if bad:
                return bad
    return None


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    """A TypedDict's keys and their types, in the order they are declared (and written)."""
    return get_type_hints(schema)


def _misfit(value: Any, kind: Any, where: str) -> str | None:
    """Why ``value`` does not fit the annotation ``kind``; only sections (TypedDicts, lists of them, and
    objects) are looked into."""
    args = get_args(kind)
    if get_origin(kind) in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kind = next(a for a in args if a is not type(None))  # our unions hold one section at most
        args = get_args(kind)
    if is_typeddict(kind):
        return _missing(value, kind, f"{where}.") if isinstance(value, dict) else f"{where} is not an object"
    if get_origin(kind) is dict:
        return None if isinstance(value, dict) else f"{where} is not an object"
    if get_origin(kind) is list:
        if not isinstance(value, list):
            return f"{where} is not a list"
        if is_typeddict(args[0]):
            for i, item in enumerate(value):
                bad = _misfit(item, args[0], f"{where}[{i}]")
                if bad:
                    return bad
    return None

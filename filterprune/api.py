"""The public Python surface. ``compress`` is the pipeline: baseline -> prune -> finetune -> ONNX ->
benchmark -> report, each stage a plain function call. Outputs are built in a staging folder and
renamed into place at the end, so an output folder is either complete or absent."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from . import __version__, outputs
from .bench import counting, latency, machine
from .criteria import CRITERIA, PruneContext, make_criterion
from .data import DATASETS, DEFAULT_DATA_ROOT, ImageData, load_dataset, resolve_default_dataset
from .errors import FilterpruneError, UsageError
from .models import MODELS, ModelSpec, build_model
from .onnx_export import check_parity, export_onnx
from .prune import PlanConfig, prune
from .prune import checkpoint as ckpt
from .prune.graph import build_graph
from .report import write_report
from .train import NonFiniteLoss, TrainConfig, evaluate, resolve_device, train


def say(msg: str) -> None:
    print(f"[filterprune] {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("FILTERPRUNE_CACHE", Path.home() / ".cache" / "filterprune"))


@dataclass
class CompressConfig:
    model: str
    criterion: str
    sparsity: float
    dataset: str | None = None  # None: CIFAR-10 if under data_root, else the embedded digits
    data_root: str = DEFAULT_DATA_ROOT
    checkpoint: str | None = None
    epochs: int = 10
    finetune_epochs: int = 3
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float | None = None
    finetune_lr: float | None = None  # None: a tenth of the baseline learning rate
    schedule: str = "cosine"
    sparsity_reg: float = 0.0
    scope: str | None = None  # None: the criterion's own default
    round_to: int = 1
    layer_floor: float = 0.1
    calib_batches: int = 8
    device: str = "auto"
    seed: int = 0
    out: str | None = None
    overwrite: bool = False
    export: bool = True
    bench: bool = True
    bench_batch_sizes: tuple[int, ...] = (1, 32)
    bench_iters: int = 20
    bench_warmup: int = 3

    def validate(self) -> None:
        MODELS.get(self.model)
        CRITERIA.get(self.criterion)
        if self.dataset is not None:
            DATASETS.get(self.dataset)
        PlanConfig(self.sparsity, self.scope or "layerwise", self.round_to, self.layer_floor)
        self.baseline_config()
        if self.finetune_epochs < 0:
            raise UsageError(f"--finetune-epochs must be >= 0, got {self.finetune_epochs}")
        if self.finetune_lr is not None and not (0 < self.finetune_lr < 10):
            raise UsageError(f"--finetune-lr must be in (0, 10), got {self.finetune_lr}")
        if self.checkpoint is not None and not Path(self.checkpoint).exists():
            raise UsageError(f"checkpoint not found: {self.checkpoint}")
        if self.checkpoint is not None and not (Path(self.checkpoint).is_file() or Path(self.checkpoint).is_dir()):
            raise UsageError(f"checkpoint is not a regular file or folder: {self.checkpoint}")
        if any(b < 1 for b in self.bench_batch_sizes) or self.bench_iters < 1 or self.bench_warmup < 0:
            raise UsageError("benchmark batch sizes and iterations must be >= 1")
        if self.calib_batches < 1:
            raise UsageError(f"--calib-batches must be >= 1, got {self.calib_batches}")

    def baseline_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, optimizer=self.optimizer, lr=self.lr, schedule=self.schedule,
                           batch_size=self.batch_size, sparsity_reg=self.sparsity_reg, seed=self.seed)

    def finetune_config(self) -> TrainConfig:
        base = self.baseline_config()
        lr = self.finetune_lr if self.finetune_lr is not None else base.learning_rate / 10
        return replace(base, epochs=self.finetune_epochs, lr=lr, sparsity_reg=0.0)


# ----------------------------------------------------------------------------------------------- data
def load_data(dataset: str | None, data_root: str) -> ImageData:
    """Load the named dataset, or the default one with a notice saying which it is."""
    if dataset is None:
        dataset, notice = resolve_default_dataset(data_root)
        if notice:
            say(f"notice: {notice}")
    data = load_dataset(dataset, data_root)
    say(f"data: {data.describe()}")
    return data


def spec_for(model: str, data: ImageData) -> ModelSpec:
    return ModelSpec(model, data.num_classes, data.in_channels, data.image_size)


# ------------------------------------------------------------------------------------------- baseline
def baseline_key(spec: ModelSpec, data: ImageData, cfg: TrainConfig) -> str:
    """Hash of everything that determines the trained baseline, so every criterion starts from it."""
    ident = {"spec": spec.to_dict(), "data": [data.name, data.source, len(data.y_train), len(data.y_test)],
             "train": cfg.to_dict(), "version": 1}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def train_baseline(spec: ModelSpec, data: ImageData, cfg: TrainConfig, device: torch.device,
                   use_cache: bool = True) -> tuple[nn.Module, dict]:
    """A trained (or, with 0 epochs, freshly initialised) dense model, from the cache when present."""
    torch.manual_seed(cfg.seed)
    model = build_model(spec)
    info = {"epochs": cfg.epochs, "train": cfg.to_dict()}
    if cfg.epochs == 0:
        return model, info
    key = baseline_key(spec, data, cfg)
    path = cache_dir() / "baselines" / key / "model"
    info["cache_key"] = key
    if use_cache and path.with_suffix(".json").is_file():
        try:
            cached = ckpt.load(path.with_suffix(".json"))
            say(f"baseline: reusing cached {spec.name} ({key}) from {path.parent}")
            return cached, info
        except FilterpruneError as e:  # a damaged entry is never reused: train it again
            warnings.warn(f"cached baseline {path.parent} is damaged ({e}); training it again", stacklevel=2)
    say(f"baseline: training {spec.name} for {cfg.epochs} epochs on {data.name} ({device.type})")
    try:
        info["history"] = train(model, data, cfg, device, desc=f"train {spec.name}")
    except NonFiniteLoss as e:
        raise outputs.keep_last_good(model, _last_good_folder("baseline", spec), spec, e) from None
    if use_cache:  # the entry folder appears complete (weights + description) or not at all
        outputs.write_folder(path.parent, lambda d: ckpt.save(model, d / path.name, spec, meta={
            "dataset": data.name, "train": cfg.to_dict()}), overwrite=True)
    return model, info


def _last_good_folder(stage: str, spec: ModelSpec) -> Path:
    """Where training that diverged keeps its last good weights (never inside an output folder)."""
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    return cache_dir() / "last-good" / f"{stage}-{spec.name.replace(':', '-')}-{stamp}"


def load_checkpoint_into(spec: ModelSpec, path: str) -> nn.Module:
    """A user's dense checkpoint: a filterprune checkpoint, .safetensors or a weights-only .pt/.pth."""
    p = Path(path)
    if p.is_dir() or p.suffix == ".json" or p.with_suffix(".json").is_file():
        meta = ckpt.read_meta(p)
        if meta["spec"].name != spec.name:
            raise UsageError(f"{path} holds a {meta['spec'].name}, not a {spec.name}")
        return ckpt.load(p)
    model = build_model(spec)
    ckpt.load_weights(model, ckpt.read_state_dict(p), str(p))
    return model


# ------------------------------------------------------------------------------------------- outputs
def _default_out(cfg: CompressConfig) -> Path:
    stem = Path("runs") / f"{cfg.model.replace(':', '-')}-{cfg.criterion}-s{cfg.sparsity:g}"
    out, i = stem, 2
    while out.exists():
        out, i = stem.with_name(f"{stem.name}-{i}"), i + 1
    return out


def _resolve_out(cfg: CompressConfig) -> Path:
    out = _default_out(cfg) if cfg.out is None else Path(cfg.out)
    outputs.check_target(out, cfg.overwrite)
    return out


# ------------------------------------------------------------------------------------------ compress
def compress(cfg: CompressConfig) -> Path:
    """Run the whole pipeline; returns the output folder (see README for what it holds)."""
    cfg.validate()
    device = resolve_device(cfg.device)
    out = _resolve_out(cfg)
    criterion = make_criterion(cfg.criterion)
    scope = cfg.scope or criterion.default_scope
    plan = PlanConfig(cfg.sparsity, scope, cfg.round_to, cfg.layer_floor)
    data = load_data(cfg.dataset, cfg.data_root)
    spec = spec_for(cfg.model, data)
    input_shape = (spec.in_channels, spec.image_size, spec.image_size)
    probe = build_model(spec)  # fail before any training: a criterion or an architecture that cannot apply
    criterion.check(probe)
    build_graph(probe, torch.randn(1, *input_shape))
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[stage] = round(now - t, 3)
        t = now

    if cfg.checkpoint:
        dense = load_checkpoint_into(spec, cfg.checkpoint)
        baseline = {"checkpoint": str(cfg.checkpoint)}
    else:
        dense, baseline = train_baseline(spec, data, cfg.baseline_config(), device)
    dense = dense.to(device)
    dense_acc = evaluate(dense, data, device)
    lap("baseline")

    pruned = copy.deepcopy(dense).cpu()
    ctx = PruneContext(example_inputs=torch.randn(1, *input_shape), data=data, device=device, seed=cfg.seed,
                       batch_size=cfg.batch_size, calib_batches=cfg.calib_batches)
    say(f"prune: {cfg.criterion}, sparsity {cfg.sparsity:g}, {scope}, round_to {cfg.round_to}")
    result = prune(pruned, criterion, plan, ctx, spec.num_classes)
    lap("prune")
    pruned = pruned.to(device)
    ft = cfg.finetune_config()
    try:
        finetune_history = train(pruned, data, ft, device, desc="finetune") if ft.epochs else []
    except NonFiniteLoss as e:
        raise outputs.keep_last_good(pruned, _last_good_folder("finetune", spec), spec, e, result.history,
                                     {"criterion": cfg.criterion, "sparsity": cfg.sparsity}) from None
    pruned_acc = evaluate(pruned, data, device)
    lap("finetune")

    dense, pruned = dense.cpu().eval(), pruned.cpu().eval()
    cost_dense, cost_pruned = counting.count(dense, input_shape), counting.count(pruned, input_shape)
    out.parent.mkdir(parents=True, exist_ok=True)
    outputs.sweep_stale(out)
    staging = outputs.staging_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        meta = {"criterion": cfg.criterion, "sparsity": cfg.sparsity, "scope": scope,
                "dataset": data.name, "mean": list(data.mean), "std": list(data.std),
                "class_names": data.class_names, "version": __version__}
        ckpt.save(pruned, staging / "pruned", spec, result.history, meta)
        onnx_info, onnx_paths = None, {}
        if cfg.export:
            say("export: ONNX with dynamic batch, checker, onnxruntime parity at batch 1 and 7")
            md = {"model": spec.name, "input_shape": json.dumps([-1, *input_shape]), **{
                k: json.dumps(v) if not isinstance(v, str) else v for k, v in meta.items()},
                "dense_macs": str(cost_dense.macs), "pruned_macs": str(cost_pruned.macs),
                "dense_params": str(cost_dense.params), "pruned_params": str(cost_pruned.params)}
            onnx_paths["pruned"] = export_onnx(pruned, staging / "model.onnx", input_shape, metadata=md)
            onnx_info = {"path": "model.onnx", **check_parity(pruned, onnx_paths["pruned"], input_shape)}
            onnx_paths["dense"] = export_onnx(dense, staging / "dense.onnx", input_shape)
            lap("export")
        rows = []
        if cfg.bench:
            say(f"bench: dense vs pruned, interleaved, batch sizes {list(cfg.bench_batch_sizes)}, "
                f"{cfg.bench_iters} iterations")
            rows = latency.compare({"dense": dense, "pruned": pruned}, onnx_paths, input_shape,
                                   cfg.bench_batch_sizes, device=device if device.type == "cuda" else torch.device("cpu"),
                                   warmup=cfg.bench_warmup, iters=cfg.bench_iters)
            lap("bench")
        report = {
            "model": spec.name, "criterion": cfg.criterion, "sparsity": cfg.sparsity, "scope": scope,
            "round_to": cfg.round_to, "seed": cfg.seed, "device": device.type,
            "dataset": {"name": data.name, "source": data.source, "train": len(data.y_train),
                        "test": len(data.y_test)},
            "dense": {**cost_dense.to_dict(), "accuracy": dense_acc["top1"], "top5": dense_acc["top5"]},
            "pruned": {**cost_pruned.to_dict(), "accuracy": pruned_acc["top1"], "top5": pruned_acc["top5"]},
            "theoretical_speedup": cost_dense.macs / cost_pruned.macs,
            "channel_sparsity": _channel_sparsity(result.layers),
            "layers": result.layers, "skipped_groups": result.skipped,
            "onnx": onnx_info,
            "latency": latency.pair_rows(rows), "latency_rows": rows,
            "baseline": baseline, "finetune": {"config": ft.to_dict(), "history": finetune_history},
            "timings_s": timings, "machine": machine.describe(), "version": __version__,
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        }
        write_report(report, staging)
        out = outputs.publish(staging, out, cfg.overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"done: dense top-1 {100 * dense_acc['top1']:.2f}% -> pruned {100 * pruned_acc['top1']:.2f}%, "
        f"MACs {cost_dense.macs / 1e6:.1f}M -> {cost_pruned.macs / 1e6:.1f}M "
        f"({report['theoretical_speedup']:.2f}x); outputs in {out}/")
    return out


def _channel_sparsity(layers: list[dict]) -> float:
    before = sum(r["channels_before"] for r in layers)
    after = sum(r["channels_after"] for r in layers)
    return 1 - after / before if before else 0.0


load = ckpt.load


def train_command(model: str, dataset: str | None, data_root: str, cfg: TrainConfig, device_name: str,
                  out: str | None, overwrite: bool = False) -> Path:
    """`filterprune train`: train (or reuse) the cached baseline and copy it to ``out`` with its accuracy."""
    MODELS.get(model)
    if dataset is not None:
        DATASETS.get(dataset)
    device = resolve_device(device_name)
    target = Path(out) if out else None
    if target:
        outputs.check_target(target, overwrite)
    data = load_data(dataset, data_root)
    spec = spec_for(model, data)
    net, info = train_baseline(spec, data, cfg, device)
    acc = evaluate(net, data, device)
    target = target or Path("runs") / f"train-{model.replace(':', '-')}-{info.get('cache_key', 'init')}"
    target = outputs.write_folder(target, lambda d: ckpt.save(net.cpu(), d / "model", spec, meta={
        "dataset": data.name, "train": cfg.to_dict(), "accuracy": acc, "mean": list(data.mean),
        "std": list(data.std), "class_names": data.class_names}), overwrite)
    say(f"{spec.name} on {data.name}: top-1 {100 * acc['top1']:.2f}%, top-5 {100 * acc['top5']:.2f}% "
        f"({acc['images']} test images); saved to {target}/model.safetensors")
    print(target)
    return target

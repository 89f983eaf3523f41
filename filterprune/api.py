"""The public Python surface. ``compress`` is the pipeline: baseline -> prune -> finetune -> ONNX ->
benchmark -> report, each stage a plain function call. Outputs are built in a staging folder and
renamed into place at the end, so an output folder is either complete or absent."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn

from . import __version__, distributed, outputs, sources
from .bench import counting, machine
from .bench.suite import BenchConfig, Variant, dense_vs_pruned, run_bench
from .config import CompressConfig  # noqa: F401  (the public name: filterprune.api.CompressConfig)
from .criteria import PruneContext, make_criterion
from .data import DATASETS, ImageData, load_dataset, resolve_default_dataset
from .deploy import onnx_metadata
from .errors import FilterpruneError, UsageError
from .log import say
from .masks import control
from .models import ModelSpec, build_model, check_model_ref, initial_model
from .onnx_export import check_parity, export_onnx
from .prune import checkpoint as ckpt
from .prune import prune_in_steps
from .prune.graph import build_graph
from .report import write_report
from .train import NonFiniteLoss, TrainConfig, evaluate, resolve_device, train


def cache_dir() -> Path:
    return Path(os.environ.get("FILTERPRUNE_CACHE", Path.home() / ".cache" / "filterprune"))


# ----------------------------------------------------------------------------------------------- data
def load_data(dataset: str | None, data_root: str, val_fraction: float = 0.0, seed: int = 0, **options) -> ImageData:
    """Load the named dataset, or the default one with a notice saying which it is; ``val_fraction`` of
    the training images (drawn with ``seed``) become the validation split that chooses kept epochs.
    ``options`` reach streamed datasets (image size, preprocessing: ``sources.prepare``)."""
    if dataset is None:
        dataset, notice = resolve_default_dataset(data_root)
        if notice:
            say(f"notice: {notice}")
    data = load_dataset(dataset, data_root, seed=seed, **options).carve_val(val_fraction, seed)
    say(f"data: {data.describe()}")
    return data


def spec_for(model: str, data: ImageData) -> ModelSpec:
    return ModelSpec(model, data.num_classes, data.in_channels, data.image_size)


# ------------------------------------------------------------------------------------------- baseline
def baseline_key(spec: ModelSpec, data: ImageData, cfg: TrainConfig) -> str:
    """Hash of everything that determines the trained baseline, so every criterion starts from it."""
    ident = {"spec": spec.to_dict(), "data": [data.name, data.source, len(data.y_train), len(data.y_test)],
             "train": cfg.to_dict(), "version": 2}
    if data.y_val is not None:  # which images were held out (the split's seed decides them)
        ident["val"] = data.val_digest() if hasattr(data, "val_digest") else \
            hashlib.sha256(data.x_val.numpy().tobytes()).hexdigest()[:16]
    if distributed.active():  # DDP trains another (equally valid) model than one process does
        ident["world_size"] = distributed.world_size()
    if (digest := sources.user_factory.code_digest(spec.name)) is not None:  # an edited model file trains anew
        ident["code_sha256"] = digest
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def train_baseline(spec: ModelSpec, data: ImageData, cfg: TrainConfig, device: torch.device,
                   use_cache: bool = True) -> tuple[nn.Module, dict]:
    """A trained (or, with 0 epochs, freshly initialised) dense model, from the cache when present."""
    torch.manual_seed(cfg.seed)
    model, loaded = initial_model(spec)  # pretrained weights (tv --weights) when the spec names some
    info = {"epochs": cfg.epochs, "train": cfg.to_dict(), **({"pretrained": loaded} if loaded else {})}
    for key in loaded.get("head_replaced", []) if loaded else []:
        say(f"pretrained: {key} replaced ({loaded.get('categories')} classes in the weights, {spec.num_classes} "
            "in the data): trained from scratch with the rest")
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
    if use_cache and distributed.is_main():  # the entry folder appears complete or not at all
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
        model = ckpt.load(p)
        if meta["history"]:  # its pruning would be lost: the new run records only its own
            raise UsageError(f"{path} holds an already pruned {spec.name} ({len(meta['history'])} pruning "
                             "steps); --checkpoint takes dense weights (prune the dense model with a higher "
                             "--sparsity, or --steps K)")
        return model
    model = build_model(spec)
    replaced = sources.load_checkpoint_weights(model, ckpt.read_state_dict(p), spec, str(p))
    if replaced:
        say(f"checkpoint: classifier head {', '.join(replaced['head_replaced'])} replaced (another class count); "
            "it is trained with the rest")
        model.filterprune_loaded = replaced  # noqa: B010  (read by _compress for the report)
    return model


# ------------------------------------------------------------------------------------------- outputs
def _default_out(cfg: CompressConfig) -> Path:
    target = f"s{cfg.sparsity:g}" if cfg.sparsity is not None else f"m{cfg.target_macs:g}" \
        if cfg.target_macs is not None else f"x{cfg.target_speedup:g}" if cfg.target_speedup is not None \
        else f"ms{cfg.target_latency:g}"
    stem = Path("runs") / f"{sources.short_name(cfg.model)}-{cfg.criterion}-{target}"
    out, i = stem, 2
    while out.exists():
        out, i = stem.with_name(f"{stem.name}-{i}"), i + 1
    return out


def _resolve_out(cfg: CompressConfig) -> Path:
    out = _default_out(cfg) if cfg.out is None else Path(cfg.out)
    outputs.check_target(out, cfg.overwrite)
    return out


# ------------------------------------------------------------------------------------------ compress
def compress(cfg: CompressConfig, given: sources.Given | None = None) -> Path:
    """Run the whole pipeline; returns the output folder (see README for what it holds). ``given``: the
    user's own module and/or DataLoaders (``filterprune.compress(model=net, train=..., test=...)``)."""
    cfg.validate()
    with distributed.session(cfg.distributed, resolve_device(cfg.device), cfg.batch_size) as device:
        return _compress(cfg, device, given)


def _compress(cfg: CompressConfig, device: torch.device, given: sources.Given | None = None) -> Path:
    out = _resolve_out(cfg)
    if not cfg.checkpoint and cfg.epochs:
        outputs.check_cache(cache_dir())  # the baseline goes there: say so now, not after training
    criterion = make_criterion(cfg.criterion)
    scope = cfg.scope or criterion.default_scope
    plan = cfg.plan_config(scope)
    data, spec, native = sources.prepare(cfg, load_data, given)
    input_shape = (spec.in_channels, spec.image_size, spec.image_size)
    probe = sources.probe_model(spec, given)  # fail before any training: a criterion or architecture that cannot apply
    sources.check_probe(probe, spec, cfg.ignore_layers)
    criterion.check(probe)
    build_graph(probe, torch.randn(1, *input_shape))
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[stage] = round(now - t, 3)
        t = now

    if given is not None and given.model is not None:  # the module in hand is the baseline (epochs: train it more)
        dense, baseline = sources.given_baseline(given.model, data, cfg.baseline_config(), device, train)
    elif cfg.checkpoint:
        dense = load_checkpoint_into(spec, cfg.checkpoint)
        baseline = {"checkpoint": str(cfg.checkpoint)}
        if cfg.sparsity_epochs:
            sparsity_cfg = replace(cfg.baseline_config(), epochs=cfg.sparsity_epochs)
            say(f"sparsity training: {cfg.sparsity_epochs} epochs, lambda {cfg.sparsity_reg:g} on BN scales")
            baseline["sparsity_training"] = {"config": sparsity_cfg.to_dict(), "history": train(
                dense.to(device), data, sparsity_cfg, device, desc="sparsity")}
    else:
        dense, baseline = train_baseline(spec, data, cfg.baseline_config(), device)
    dense = dense.to(device)
    dense_acc = evaluate(dense, data, device)
    lap("baseline")

    pruned = copy.deepcopy(dense).cpu()
    ctx = PruneContext(example_inputs=torch.randn(1, *input_shape), data=data, device=device, seed=cfg.seed,
                       batch_size=cfg.batch_size, calib_batches=cfg.calib_batches,
                       mask=cfg.mask_config(data.num_classes), ignored_layers=tuple(cfg.ignore_layers))
    target = f"sparsity {cfg.sparsity:g}" if cfg.sparsity is not None else \
        f"MACs <= {cfg.target_macs:g} x dense" if cfg.target_macs is not None else \
        f"measured speedup {cfg.target_speedup:g}x" if cfg.target_speedup is not None else \
        f"measured latency {cfg.target_latency:g} ms"
    if plan.latency_targeted:
        target += f" on {cfg.target_runtime} at batch {cfg.target_batch}"
    say(f"prune: {cfg.criterion}, {target}, {scope}, round_to {cfg.round_to}, {cfg.steps} step(s), mode {cfg.mode}")
    ft = cfg.finetune_config(data.num_classes)
    teacher = dense if cfg.distill == "kd" else None  # frozen; the pruned copies learn its soft targets
    step_histories = []

    def finetune_between(model: nn.Module, i: int) -> None:
        step_histories.append(train(model.to(device), data, ft, device, desc=f"finetune {i}/{cfg.steps}",
                                    teacher=teacher) if ft.epochs else [])
        model.cpu()

    if cfg.mode == "masked":
        result = control.mask_in_place(pruned, criterion, ctx)
    else:
        result = prune_in_steps(pruned, criterion, plan, ctx, spec.num_classes, cfg.steps, finetune_between)
    masks = getattr(criterion, "dense_masks", None)  # mask criteria: the unstructured mask on the dense model
    own_masks = masks if cfg.mode == "masked" else None
    for layer, why in result.unprunable.items():
        say(f"warning: left {layer} whole: {why}")
    distributed.check_same_network(pruned)  # --distributed: every rank pruned the same channels
    lap("prune")
    pruned = pruned.to(device)
    try:
        finetune_history = control.finetune(pruned, own_masks, ft, data, device, teacher=teacher)
    except NonFiniteLoss as e:
        raise outputs.keep_last_good(pruned, _last_good_folder("finetune", spec), spec, e, result.history,
                                     {"criterion": cfg.criterion, "sparsity": cfg.sparsity}) from None
    pruned_acc = evaluate(pruned, data, device)
    masked = control.MaskedModel(pruned, pruned_acc, finetune_history) if own_masks else \
        control.masked_control(dense, masks, ft, data, device, teacher) if masks else None
    lap("finetune")
    scratch = from_scratch(spec, result.history, cfg.scratch_config(data.num_classes), data, device) \
        if cfg.scratch else None
    if scratch:
        lap("scratch")
    if not distributed.is_main():  # --distributed: rank 0 alone exports, benchmarks and writes the outputs
        return out

    dense, pruned = dense.cpu().eval(), pruned.cpu().eval()
    cost_dense, cost_pruned = counting.count(dense, input_shape), counting.count(pruned, input_shape, own_masks)
    variants = {"dense": dense, "pruned": pruned}
    if masked and not own_masks:
        variants["masked"] = masked.model.cpu().eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    outputs.sweep_stale(out)
    staging = outputs.staging_path(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        sparsity = cfg.sparsity if cfg.sparsity is not None else result.sparsity  # asked, or found for --target-macs
        meta = {"criterion": cfg.criterion, "sparsity": sparsity, "scope": scope,
                "dataset": data.name, "mean": list(data.mean), "std": list(data.std),
                "class_names": data.class_names, "version": __version__,
                **({"resize_size": data.resize_size} if getattr(data, "resize_size", None) else {})}
        ckpt.save(pruned, staging / "pruned", spec, result.history, meta)
        onnx_info, onnx_paths = None, {}
        if cfg.export:
            say("export: ONNX with dynamic batch, checker, onnxruntime parity at batch 1 and 7")
            md = onnx_metadata(spec, meta, cost_dense, cost_pruned)
            onnx_paths["pruned"] = export_onnx(pruned, staging / "model.onnx", input_shape, metadata=md)
            onnx_info = {"path": "model.onnx", **check_parity(pruned, onnx_paths["pruned"], input_shape)}
            onnx_paths["dense"] = export_onnx(dense, staging / "dense.onnx", input_shape)
            if "masked" in variants:
                onnx_paths["masked"] = export_onnx(variants["masked"], staging / "masked.onnx", input_shape)
            lap("export")
        rows = []
        if cfg.bench:
            say(f"bench: {' vs '.join(variants)}, interleaved, batch sizes {list(cfg.bench_batch_sizes)}, "
                f"{cfg.bench_iters} iterations")
            # how the memory probe's fresh process rebuilds each variant; the masked control has the dense
            # shapes (its zeros are stored), so its PyTorch memory is probed on the dense architecture
            trusted = sorted(sources.user_factory.trusted())  # a user factory: the fresh process may import it
            rebuild = {"dense": {"kind": "dense", "path": str(staging), "trusted": trusted},
                       "pruned": {"kind": "checkpoint", "path": str(staging), "trusted": trusted},
                       "masked": {"kind": "dense", "path": str(staging), "trusted": trusted}}
            bench_variants = [Variant(name, input_shape, c.params, c.macs, m, onnx_paths.get(name), rebuild[name])
                              for name, m, c in (("dense", dense, cost_dense), ("pruned", pruned, cost_pruned),
                                                 ("masked", variants.get("masked"), cost_dense))
                              if m is not None]
            rows = run_bench(bench_variants, BenchConfig(
                devices=("cuda",) if device.type == "cuda" else ("cpu",), providers=("cpu",),
                batch_sizes=cfg.bench_batch_sizes, warmup=cfg.bench_warmup, iters=cfg.bench_iters,
                memory=cfg.bench_memory), log=say)
            lap("bench")
        report = {
            "model": spec.name, "criterion": cfg.criterion, "sparsity": sparsity, "scope": scope,
            "target_macs": cfg.target_macs, "steps": cfg.steps, "latency_target": result.latency_target,
            "round_to": cfg.round_to, "seed": cfg.seed, "device": device.type, "processes": distributed.world_size(),
            "dataset": {"name": data.name, "source": data.source, "train": len(data.y_train),
                        "val": 0 if data.y_val is None else len(data.y_val), "test": len(data.y_test)},
            "dense": {**cost_dense.to_dict(), "accuracy": dense_acc["top1"], "top5": dense_acc["top5"]},
            "pruned": {**cost_pruned.to_dict(), "accuracy": pruned_acc["top1"], "top5": pruned_acc["top5"]},
            "mode": cfg.mode,
            "masked": control.section(masked, masks, ctx.mask, input_shape, cost_dense) if masked else None,
            "theoretical_speedup": cost_dense.macs / cost_pruned.macs,
            "channel_sparsity": _channel_sparsity(result.layers),
            "layers": result.layers, "skipped_groups": result.skipped, "unprunable_groups": result.unprunable,
            "onnx": onnx_info,
            "latency": dense_vs_pruned(rows), "latency_rows": rows,
            "baseline": baseline, "finetune": {"config": ft.to_dict(), "recipe": cfg.recipe, "distill": cfg.distill,
                                                "kept_epoch": kept_epoch(finetune_history),
                                                "history": finetune_history, "between_steps": step_histories},
            "scratch": scratch,
            "timings_s": timings, "machine": machine.describe(), "version": __version__,
            "model_source": sources.describe(spec, native, baseline.get("pretrained") or getattr(
                dense, "filterprune_loaded", None), cfg.checkpoint),
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


def kept_epoch(history: list[dict]) -> int | None:
    """The epoch whose weights training kept (best validation top-1), else the last one."""
    return next((r["epoch"] for r in history if r.get("kept")), history[-1]["epoch"] if history else None)


def from_scratch(spec: ModelSpec, history: list, cfg: TrainConfig, data: ImageData, device: torch.device) -> dict:
    """Liu et al. 2019's control: the pruned architecture, freshly initialised (the model's own init on
    the dense shapes, cut by the pruning history) and trained with the baseline recipe for the run's
    total epochs; is the pruned model better than the architecture alone?"""
    torch.manual_seed(cfg.seed + 1)  # another init than the baseline's
    model = ckpt.rebuild(spec, history).to(device)
    say(f"scratch: training the pruned architecture from a fresh init for {cfg.epochs} epochs")
    hist = train(model, data, cfg, device, desc="scratch")
    acc = evaluate(model, data, device)
    return {"epochs": cfg.epochs, "accuracy": acc["top1"] if acc else None, "top5": acc["top5"] if acc else None,
            "kept_epoch": kept_epoch(hist), "history": hist}


def _channel_sparsity(layers: list[dict]) -> float:
    before = sum(r["channels_before"] for r in layers)
    after = sum(r["channels_after"] for r in layers)
    return 1 - after / before if before else 0.0


load = ckpt.load


def train_command(model: str, dataset: str | None, data_root: str, cfg: TrainConfig, device_name: str,
                  out: str | None, overwrite: bool = False, ddp: bool = False, val_fraction: float = 0.1) -> Path:
    """`filterprune train`: train (or reuse) the cached baseline and copy it to ``out`` with its accuracy.
    ``ddp``: trains with DistributedDataParallel under torchrun (see distributed.py). ``val_fraction``
    as in compress, so that compress reuses the baseline this trains."""
    check_model_ref(sources.model_ref(model))
    if dataset is not None:
        DATASETS.get(dataset)
    if not 0 <= val_fraction <= 0.5:
        raise UsageError(f"--val-fraction must be in [0, 0.5], got {val_fraction}")
    with distributed.session(ddp, resolve_device(device_name), cfg.batch_size) as device:
        return _train_command(model, dataset, data_root, cfg, device, out, overwrite, val_fraction)


def _train_command(model: str, dataset: str | None, data_root: str, cfg: TrainConfig, device: torch.device,
                   out: str | None, overwrite: bool, val_fraction: float = 0.1) -> Path | None:
    target = Path(out) if out else None
    if target:
        outputs.check_target(target, overwrite)
    if cfg.epochs:
        outputs.check_cache(cache_dir())
    data = load_data(dataset, data_root, val_fraction, cfg.seed)
    spec = spec_for(sources.model_ref(model), data)
    net, info = train_baseline(spec, data, cfg, device)
    if not distributed.is_main():  # --distributed: rank 0 alone evaluates and writes
        return None
    acc = evaluate(net, data, device)
    target = target or Path("runs") / f"train-{model.replace(':', '-')}-{info.get('cache_key', 'init')}"
    target = outputs.write_folder(target, lambda d: ckpt.save(net.cpu(), d / "model", spec, meta={
        "dataset": data.name, "train": cfg.to_dict(), "accuracy": acc, "mean": list(data.mean),
        "std": list(data.std), "class_names": data.class_names}), overwrite)
    say(f"{spec.name} on {data.name}: top-1 {100 * acc['top1']:.2f}%, top-5 {100 * acc['top5']:.2f}% "
        f"({acc['images']} test images); saved to {target}/model.safetensors")
    print(target)
    return target

"""The stages of ``compress``, each a function that takes the frozen results of the stages before it and
returns its own: setup (``Setup``) -> baseline (``Baseline``) -> prune (``Pruned``) -> finetune
(``Finetuned``) -> scratch (``Scratch``) -> outputs (``Artifacts``: checkpoint, ONNX, benchmark rows),
then ``report``. ``pipeline.run`` calls them in that order; nothing holds mutable pipeline state."""

from __future__ import annotations

import copy
import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from . import __version__, distributed, inputs, limits, outputs
from . import serialization as ckpt
from .baseline import dense_model, last_good_folder
from .benchmarking import counting, machine
from .benchmarking.config import BenchConfig
from .benchmarking.counting import Cost
from .benchmarking.targets import Variant
from .benchmarking.timing import dense_vs_pruned, run_bench
from .config import CompressConfig, Prune
from .criteria import Criterion, PruneContext, make_criterion
from .data.source import DataSource
from .exporting import quantize
from .exporting.command import onnx_metadata
from .exporting.convert import check_parity, export_onnx, exporter_of
from .fileio import atomic_write_bytes, cache_dir
from .handed import check_untied
from .log import say
from .masks import control
from .models import ModelSpec, factory, refs, sizes_on_meta
from .pruning import align, prune_in_steps
from .pruning.graph import build_graph
from .pruning.plan import PlanConfig
from .pruning.shrink import PruneResult
from .reporting import schema
from .reporting.schema import SCHEMA_VERSION, Report
from .targets import Sparsity
from .tasks import Task, make_task
from .train import NonFiniteLoss, TrainConfig, train


@dataclass(frozen=True)
class Setup:
    """What a run is, fixed before any training: its options, where it writes, the criterion, data and
    spec."""

    cfg: CompressConfig
    device: torch.device
    given: inputs.Given | None
    out: Path
    criterion: Criterion
    scope: str
    data: DataSource
    spec: ModelSpec
    native: dict
    plan: PlanConfig
    task: Task = field(default_factory=lambda: make_task("classification"))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.spec.in_channels, self.spec.image_size, self.spec.image_size)

    @property
    def finetune_config(self) -> TrainConfig:
        return self.cfg.finetune_config(self.data.num_classes)


@dataclass(frozen=True)
class Baseline:
    model: nn.Module
    accuracy: dict
    info: schema.Baseline  # the report's ``baseline`` section


@dataclass(frozen=True)
class Pruned:
    model: nn.Module
    ctx: PruneContext
    result: PruneResult
    masks: dict | None  # mask criteria: the unstructured mask on the dense model
    own_masks: dict | None  # ``--mode masked``: the pruned model *is* the masked dense one
    step_histories: list = field(default_factory=list)


@dataclass(frozen=True)
class Finetuned:
    model: nn.Module
    accuracy: dict
    history: list
    masked: control.MaskedModel | None  # the masked control of a mask criterion


@dataclass(frozen=True)
class Scratch:
    epochs: int
    accuracy: float | None
    top5: float | None
    kept_epoch: int | None
    history: list

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Exported:
    onnx: dict  # the pruned file's path and parity
    paths: dict[str, Path]  # variant -> its fp32 file
    int8_paths: dict[str, Path]  # variant -> its INT8 file (precision int8)
    deployed: dict  # report.json's ``deployed``: each file's own accuracy


@dataclass(frozen=True)
class Artifacts:
    costs: dict[str, Cost]  # variant -> params, MACs
    exported: Exported | None  # None: --no-export
    rows: list[dict]  # benchmark rows

    @property
    def onnx(self) -> dict | None:
        return self.exported.onnx if self.exported else None


def setup(cfg: CompressConfig, device: torch.device, given: inputs.Given | None) -> Setup:
    """Everything that can fail before training fails here: the output folder, the cache, the data, and a
    probe model that the criterion, the architecture checks and the dependency graph must accept."""
    out = default_out(cfg) if cfg.output.out is None else Path(cfg.output.out)
    outputs.check_target(out, cfg.output.overwrite)
    if not cfg.model.checkpoint and cfg.train.epochs:
        outputs.check_cache(cache_dir())  # the baseline goes there: say so now, not after training
    criterion = make_criterion(cfg.prune.criterion)
    task = make_task(cfg.data.task)
    data, spec, native = task.prepare(cfg, given)
    scope = cfg.prune.scope or criterion.default_scope
    s = Setup(cfg, device, given, out, criterion, scope, data, spec, native, cfg.prune.plan(scope), task)
    if "int8" in cfg.precisions:  # the calibration images come from the training split
        quantize.check_calib_images(data, cfg.bench.calib_images)
    p = cfg.prune
    measure = p.target_batch if p.target.measured or p.round_to == "auto" else None
    sizes = sizes_on_meta(spec) if given is None or given.model is None else None
    if sizes:  # bounded before anything is built for real
        limits.check_sizes(*sizes, measure)
    probe = inputs.probe_model(spec, given)
    if sizes is None:  # built for real (a module in hand, or no meta build): counted right after
        limits.check_sizes(
            sum(t.numel() for t in probe.parameters()),
            *limits.activation_sizes(probe, s.input_shape),
            measure,
        )
    task.check_probe(probe, spec, cfg.model.ignore_layers)
    criterion.check(probe)
    check_untied(probe)
    align.check_auto(probe, cfg.prune.round_to)
    build_graph(probe, task.example_inputs(s.input_shape))
    return s


def baseline(s: Setup) -> Baseline:
    dense, info = dense_model(s.cfg, s.spec, s.data, s.device, s.given, s.task)
    dense = dense.to(s.device)
    return Baseline(dense, s.task.evaluate(dense, s.data, s.device), info)


def prune(s: Setup, b: Baseline) -> Pruned:
    """Structured pruning of a copy of the dense model (``--steps``: finetuned between steps), or, with
    ``--mode masked``, the criterion's mask applied in place."""
    cfg, p = s.cfg, s.cfg.prune
    model = copy.deepcopy(b.model).cpu()
    loss, batches = s.task.calibration(s.data, s.device, cfg.train) or (None, None)
    ctx = PruneContext(
        example_inputs=s.task.example_inputs(s.input_shape),
        data=s.data,
        device=s.device,
        seed=cfg.train.seed,
        batch_size=cfg.train.batch_size,
        calib_batches=p.calib_batches,
        mask=cfg.mask_config(s.data.num_classes),
        ignored_layers=tuple(cfg.model.ignore_layers),
        deploy=lambda m: s.task.deployable(m) or m,
        loss=loss,
        batches=batches,
    )
    say(
        f"prune: {p.criterion}, {target_text(p)}, {s.scope}, round_to {p.round_to}, {p.steps} step(s), "
        f"mode {p.mode}"
    )
    steps: list = []
    if p.mode == "masked":
        result = control.mask_in_place(model, s.criterion, ctx)
    else:
        result = prune_in_steps(
            model,
            s.criterion,
            s.plan,
            ctx,
            s.spec.num_classes,
            p.steps,
            lambda m, i: steps.append(_finetune_between(s, b, m, i)),
        )
    masks = getattr(s.criterion, "dense_masks", None)
    for layer, why in result.unprunable.items():
        say(f"warning: left {layer} whole: {why}")
    distributed.check_same_network(model)  # --distributed: every rank pruned the same channels
    return Pruned(model, ctx, result, masks, masks if p.mode == "masked" else None, steps)


def _teacher(s: Setup, b: Baseline) -> nn.Module | None:
    """The frozen dense model whose outputs the pruned copies learn (None: distill off, or a task that
    does not distill this model)."""
    return b.model if s.cfg.finetune.distill != "off" and s.task.can_distill(s.spec.name) else None


def _distill(s: Setup) -> str:
    """report.json's ``finetune.distill``: as asked, or off where the task does not distill the model."""
    return s.cfg.finetune.distill if s.task.can_distill(s.spec.name) else "off"


def _finetune_between(s: Setup, b: Baseline, model: nn.Module, i: int) -> list:
    ft = s.finetune_config
    hist = (
        train(
            model.to(s.device),
            s.data,
            ft,
            s.device,
            desc=f"finetune {i}/{s.cfg.prune.steps}",
            teacher=_teacher(s, b),
            task=s.task,
        )
        if ft.epochs
        else []
    )
    model.cpu()
    return hist


def finetune(s: Setup, b: Baseline, p: Pruned) -> Finetuned:
    """Finetune the pruned model (distilled from the dense one unless ``--distill off``), and the masked
    control of a mask criterion alike."""
    ft, data, device = s.finetune_config, s.data, s.device
    model = p.model.to(device)
    try:
        history = (
            control.finetune(model, p.own_masks, ft, data, device, teacher=_teacher(s, b))
            if p.own_masks
            else train(model, data, ft, device, desc="finetune", teacher=_teacher(s, b), task=s.task)
        )
    except NonFiniteLoss as e:
        raise outputs.keep_last_good(
            model,
            last_good_folder("finetune", s.spec),
            s.spec,
            e,
            p.result.history,
            {"criterion": s.cfg.prune.criterion, "sparsity": s.cfg.prune.sparsity},
        ) from None
    acc = s.task.evaluate(model, data, device)
    masked = (
        control.MaskedModel(model, acc, history)
        if p.own_masks
        else control.masked_control(b.model, p.masks, ft, data, device, _teacher(s, b))
        if p.masks
        else None
    )
    return Finetuned(model, acc, history, masked)


def scratch(s: Setup, p: Pruned) -> Scratch:
    """Liu et al. 2019's control: the pruned architecture, freshly initialised (the model's own init on
    the dense shapes, cut by the pruning history) and trained with the baseline recipe for the run's
    total epochs; is the pruned model better than the architecture alone?"""
    cfg = s.cfg.scratch_config(s.data.num_classes)
    torch.manual_seed(cfg.seed + 1)  # another init than the baseline's
    model = ckpt.rebuild(s.spec, p.result.history).to(s.device)
    say(f"scratch: training the pruned architecture from a fresh init for {cfg.epochs} epochs")
    hist = train(model, s.data, cfg, s.device, desc="scratch", task=s.task)
    acc = s.task.report_metrics(s.task.evaluate(model, s.data, s.device))
    return Scratch(cfg.epochs, acc["accuracy"], acc["top5"], kept_epoch(hist), hist)


def write_outputs(s: Setup, b: Baseline, p: Pruned, f: Finetuned, folder: Path, timings: dict) -> Artifacts:
    """Fill the staging ``folder``: pruned checkpoint, ONNX files, benchmark rows (``timings`` gets the
    export and bench stages' seconds)."""
    b.model.cpu().eval()
    f.model.cpu().eval()
    variants = _variants(s, b, p, f)
    costs = {
        "dense": counting.count(b.model, s.input_shape),
        "pruned": counting.count(f.model, s.input_shape, p.own_masks),
    }
    meta = _checkpoint_meta(s, p)
    ckpt.save(f.model, folder / "pruned", s.spec, p.result.history, meta)
    if "masked" in variants:  # the masked control's weights, so `filterprune bench RUN_DIR` times it too
        ckpt.save(variants["masked"], folder / "masked", s.spec, [], {**meta, "masked": True})
    exported, rows = None, []
    if s.cfg.output.export:
        with timed(timings, "export"):
            exported = export(s, variants, costs, meta, folder)
    if s.cfg.output.bench:
        with timed(timings, "bench"):
            rows = bench(s, variants, costs, exported, folder)
    return Artifacts(costs, exported, rows)


@contextmanager
def timed(timings: dict, name: str):
    """A stage's wall seconds into the report's ``timings_s``."""
    t = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t, 3)


def _variants(s: Setup, b: Baseline, p: Pruned, f: Finetuned) -> dict[str, nn.Module]:
    """What is exported and timed: dense, pruned, and the masked control when it is another model; each
    as the task deploys it (a detector without its post-processing), or as it is where it has no such
    form."""
    variants = {"dense": b.model, "pruned": f.model}
    if f.masked and not p.own_masks:
        variants["masked"] = f.masked.model.cpu().eval()
    return {name: (s.task.deployable(m) or m).eval() for name, m in variants.items()}


def _sparsity(s: Setup, p: Pruned) -> float:
    asked = s.cfg.target
    return asked.value if isinstance(asked, Sparsity) else p.result.sparsity  # asked, or found by a target


def _checkpoint_meta(s: Setup, p: Pruned) -> dict:
    data = s.data
    return {
        "criterion": s.cfg.prune.criterion,
        "sparsity": _sparsity(s, p),
        "scope": s.scope,
        "dataset": data.name,
        "mean": list(data.mean),
        "std": list(data.std),
        "class_names": data.class_names,
        "task": s.task.name,  # what `filterprune export` deploys and checks parity on
        "version": __version__,
        **({"resize_size": resize} if (resize := getattr(data, "resize_size", None)) else {}),
    }


def export(
    s: Setup, variants: dict[str, nn.Module], costs: dict[str, Cost], meta: dict, folder: Path
) -> Exported:
    """The fp32 ONNX files (model.onnx with its parity proof, dense.onnx, masked.onnx), their INT8 files with
    precision int8, and the accuracy of each file run in onnxruntime over the test split."""
    say("export: ONNX with dynamic batch, checker, onnxruntime parity at batch 1 and 7")
    paths: dict[str, Path] = {}
    for name in ("pruned", *(n for n in variants if n != "pruned")):
        md = onnx_metadata(s.spec, meta, costs["dense"], costs["pruned"], variant=name)
        paths[name] = export_onnx(
            variants[name],
            folder / f"{'model' if name == 'pruned' else name}.onnx",
            s.input_shape,
            metadata=md,
            outputs=(s.task.output_name,),
        )
    onnx = {
        "path": "model.onnx",
        **exporter_of(paths["pruned"]),
        **check_parity(variants["pruned"], paths["pruned"], s.input_shape, input_range=s.task.input_range),
    }
    int8_paths, calibration = _quantize(s, paths, folder) if "int8" in s.cfg.precisions else ({}, None)
    deployed = (
        deployed_accuracy(s, paths, int8_paths, calibration, folder)
        if s.task.name == "classification"
        else None
    )  # other tasks: the files' outputs are raw (no post-processing), so no deployed metric yet
    return Exported(onnx, paths, int8_paths, deployed)


def _quantize(s: Setup, paths: dict[str, Path], folder: Path) -> tuple[dict[str, Path], dict]:
    """dense.int8.onnx and model.int8.onnx, calibrated on ``calib_images`` training images drawn with the
    seed."""
    import onnx

    n, seed = s.cfg.bench.calib_images, s.cfg.train.seed
    calibration = {
        "images": n,
        "seed": seed,
        "source": f"{s.data.name} training split",
        "method": quantize.METHOD,
    }
    say(f"int8: {quantize.METHOD}; {n} calibration images ({calibration['source']}, seed {seed})")
    images = quantize.calibration_images(s.data, n, seed)
    out = {}
    for name in ("dense", "pruned"):
        proto = quantize.quantize(
            onnx.load(str(paths[name])), images, {k: v for k, v in calibration.items() if k != "method"}
        )
        out[name] = folder / ("model.int8.onnx" if name == "pruned" else "dense.int8.onnx")
        atomic_write_bytes(out[name], proto.SerializeToString())
    return out, calibration


def deployed_accuracy(
    s: Setup, paths: dict[str, Path], int8_paths: dict[str, Path], calibration: dict | None, folder: Path
) -> dict:
    """report.json's ``deployed``: top-1/top-5 of each dense and pruned file, run by onnxruntime over the test
    split; an INT8 file losing more than ``max_int8_drop`` points against its fp32 file is a warning."""
    limit = s.cfg.bench.max_int8_drop
    files, warnings, fp32 = [], [], {}
    for precision, found in (("fp32", paths), ("int8", int8_paths)):
        for name in ("dense", "pruned"):
            if name not in found:
                continue
            acc = quantize.onnx_accuracy(found[name], s.data)
            row = {
                "variant": name,
                "precision": precision,
                "runtime": "onnxruntime",
                "path": str(found[name].relative_to(folder)),
                **acc,
            }
            if precision == "fp32":
                fp32[name] = acc["top1"]
            else:
                row["top1_drop_points"] = round(100 * (fp32[name] - acc["top1"]), 3)
                if row["top1_drop_points"] > limit:
                    warnings.append(
                        f"{row['path']} loses {row['top1_drop_points']:.2f} top-1 points against "
                        f"the fp32 file (more than max_int8_drop {limit:g})"
                    )
                    say(f"warning: {warnings[-1]}")
            files.append(row)
    say("deployed: " + ", ".join(f"{r['path']} top-1 {100 * r['top1']:.2f}%" for r in files))
    return {"files": files, "max_int8_drop": limit, "calibration": calibration, "warnings": warnings}


def bench(
    s: Setup, variants: dict[str, nn.Module], costs: dict[str, Cost], exported: Exported | None, folder: Path
) -> list[dict]:
    """Dense vs pruned (vs masked), interleaved, on PyTorch and onnxruntime, at each precision asked."""
    cfg = s.cfg.bench
    paths = exported.paths if exported else {}
    say(
        f"bench: {' vs '.join(variants)}, interleaved, batch sizes {list(cfg.batch_sizes)}, "
        f"{cfg.iters} iterations"
    )
    # how the memory probe's fresh process rebuilds each variant; the masked control has the dense
    # shapes (its zeros are stored), so its PyTorch memory is probed on the dense architecture
    trusted = factory.grants([s.spec.name])  # a user factory: the probe may import that code
    kinds = {"dense": "dense", "pruned": "checkpoint", "masked": "dense"}
    cost = {name: costs.get(name, costs["dense"]) for name in variants}
    found = [
        Variant(
            name,
            s.input_shape,
            cost[name].params,
            cost[name].macs,
            model,
            paths.get(name),
            {"kind": kinds[name], "path": str(folder), "trusted": trusted},
        )
        for name, model in variants.items()
    ]
    found += [
        Variant(
            name,
            s.input_shape,
            costs[name].params,
            costs[name].macs,
            None,
            path,
            {"kind": "onnx", "path": str(path)},
            precision="int8",
        )
        for name, path in (exported.int8_paths if exported else {}).items()
    ]
    return run_bench(
        found,
        BenchConfig(
            runtimes=_runtimes(s),
            devices=("cuda",) if s.device.type == "cuda" else ("cpu",),
            providers=("cpu",),
            batch_sizes=cfg.batch_sizes,
            warmup=cfg.warmup,
            iters=cfg.iters,
            memory=cfg.memory,
            precisions=s.cfg.precisions,
        ),
    )


def _runtimes(s: Setup) -> tuple[str, ...]:
    """PyTorch and onnxruntime, and the runtime a measured target was planned on (OpenVINO), so the
    report checks the target where it was asked."""
    p = s.cfg.prune
    return ("torch", "onnxruntime") + (
        ("openvino",) if p.target.measured and p.target_runtime == "openvino" else ()
    )


def report(
    s: Setup, b: Baseline, p: Pruned, f: Finetuned, scratch: Scratch | None, a: Artifacts, timings: dict
) -> Report:
    """report.json (README: "What a run writes")."""
    cfg, data, result = s.cfg, s.data, p.result
    dense, pruned = a.costs["dense"], a.costs["pruned"]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": s.spec.name,
        "criterion": cfg.prune.criterion,
        "sparsity": _sparsity(s, p),
        "scope": s.scope,
        "target_macs": cfg.prune.target_macs,
        "steps": cfg.prune.steps,
        "latency_target": result.latency_target,
        "round_to": cfg.prune.round_to,
        "seed": cfg.train.seed,
        "device": s.device.type,
        "processes": distributed.world_size(),
        "dataset": {
            "name": data.name,
            "source": data.source,
            "train": len(data.y_train),
            "val": 0 if data.y_val is None else len(data.y_val),
            "test": len(data.y_test),
        },
        **_models(s, b, f, a),
        "mode": cfg.prune.mode,
        "masked": control.section(f.masked, p.masks, p.ctx.mask, s.input_shape, dense) if f.masked else None,
        "theoretical_speedup": dense.macs / pruned.macs,
        "channel_sparsity": channel_sparsity(result.layers),
        "layers": result.layers,
        "skipped_groups": result.skipped,
        "unprunable_groups": result.unprunable,
        "onnx": a.onnx,
        "deployed": a.exported.deployed if a.exported else None,
        "latency": dense_vs_pruned(a.rows),
        "latency_rows": a.rows,
        "baseline": b.info,
        "finetune": {
            "config": s.finetune_config.to_dict(),
            "recipe": cfg.finetune.recipe,
            "distill": _distill(s),
            "kept_epoch": kept_epoch(f.history),
            "history": f.history,
            "between_steps": p.step_histories,
        },
        "scratch": scratch.to_dict() if scratch else None,
        "timings_s": timings,
        "machine": machine.describe(),
        "version": __version__,
        "model_source": refs.describe(
            s.spec,
            s.native,
            b.info.get("pretrained") or getattr(b.model, "filterprune_loaded", None),
            cfg.model.checkpoint,
        ),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.flat().items()},
    }


def _costs(cost: Cost, metrics: dict) -> schema.Costs:
    """A model's size and its task's first two metrics (``accuracy``, ``top5``)."""
    return {
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "accuracy": metrics["accuracy"],
        "top5": metrics["top5"],
    }


def _models(s: Setup, b: Baseline, f: Finetuned, a: Artifacts) -> dict:
    """report.json's ``dense`` and ``pruned`` (size and the task's first two metrics), ``task``, and
    ``metrics``: the task's metrics by name, dense and pruned, and which is the headline."""
    task, dense, pruned = s.task, b.accuracy or {}, f.accuracy or {}
    return {
        "dense": _costs(a.costs["dense"], task.report_metrics(b.accuracy)),
        "pruned": _costs(a.costs["pruned"], task.report_metrics(f.accuracy)),
        "task": task.name,
        "metrics": {
            "headline": task.headline,
            "names": dict(task.metrics),
            "dense": {k: dense.get(k) for k in task.metrics},
            "pruned": {k: pruned.get(k) for k in task.metrics},
        },
    }


def target_text(p: Prune) -> str:
    text = p.target.label()
    return f"{text} on {p.target_runtime} at batch {p.target_batch}" if p.target.measured else text


def default_out(cfg: CompressConfig) -> Path:
    """``runs/<model>-<criterion>-<target>``, numbered when taken."""
    stem = Path("runs") / f"{refs.short_name(cfg.model.name)}-{cfg.prune.criterion}-{cfg.target.tag()}"
    out, i = stem, 2
    while out.exists():
        out, i = stem.with_name(f"{stem.name}-{i}"), i + 1
    return out


def kept_epoch(history: list[dict]) -> int | None:
    """The epoch whose weights training kept (best validation top-1), else the last one."""
    return next((r["epoch"] for r in history if r.get("kept")), history[-1]["epoch"] if history else None)


def channel_sparsity(layers: list[dict]) -> float:
    before = sum(r["channels_before"] for r in layers)
    after = sum(r["channels_after"] for r in layers)
    return 1 - after / before if before else 0.0

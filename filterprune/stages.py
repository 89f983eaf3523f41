"""The stages of ``compress``, each a function of one ``Run`` that reads what earlier stages left in it
and adds its own results: setup -> baseline -> prune -> finetune -> scratch -> (outputs: save, export,
bench, report). ``api.compress`` calls them in that order; nothing else holds pipeline state."""
from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from . import __version__, distributed, outputs, sources
from . import serialization as ckpt
from .baseline import dense_model, last_good_folder
from .bench import counting, machine
from .bench.config import BenchConfig
from .bench.targets import Variant
from .bench.timing import dense_vs_pruned, run_bench
from .config import CompressConfig, Prune
from .criteria import PruneContext, make_criterion
from .export.command import onnx_metadata
from .export.convert import check_parity, export_onnx
from .fileio import cache_dir
from .log import say
from .masks import control
from .pruning import prune_in_steps
from .pruning.graph import build_graph
from .pruning.shrink import PruneResult
from .reporting.run_report import write_report
from .reporting.schema import SCHEMA_VERSION, Report
from .targets import Sparsity
from .train import NonFiniteLoss, TrainConfig, evaluate, train


@dataclass
class Run:
    """One compress run: its inputs (set up front) and what each stage produced."""
    cfg: CompressConfig
    device: torch.device
    given: sources.Given | None
    out: Path
    criterion: object
    scope: str
    data: object
    spec: object
    native: dict
    plan: object  # prune.PlanConfig
    timings: dict[str, float] = field(default_factory=dict)
    dense: nn.Module | None = None
    dense_acc: dict | None = None
    baseline: dict = field(default_factory=dict)
    pruned: nn.Module | None = None
    ctx: PruneContext | None = None
    result: PruneResult | None = None
    masks: object = None  # mask criteria: the unstructured mask on the dense model
    step_histories: list = field(default_factory=list)
    finetune_history: list = field(default_factory=list)
    pruned_acc: dict | None = None
    masked: control.MaskedModel | None = None
    scratch: dict | None = None
    costs: dict = field(default_factory=dict)  # variant -> counting.Cost
    onnx: dict | None = None
    onnx_paths: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.spec.in_channels, self.spec.image_size, self.spec.image_size)

    @property
    def own_masks(self):
        """``--mode masked``: the pruned model *is* the masked dense one."""
        return self.masks if self.cfg.prune.mode == "masked" else None

    @property
    def finetune_config(self) -> TrainConfig:
        return self.cfg.finetune_config(self.data.num_classes)

    @contextmanager
    def stage(self, name: str):
        """Time a stage into the report's ``timings_s``."""
        t = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t, 3)


def setup(cfg: CompressConfig, device: torch.device, given: sources.Given | None) -> Run:
    """Everything that can fail before training fails here: the output folder, the cache, the data, and a
    probe model that the criterion, the architecture checks and the dependency graph must accept."""
    out = default_out(cfg) if cfg.output.out is None else Path(cfg.output.out)
    outputs.check_target(out, cfg.output.overwrite)
    if not cfg.model.checkpoint and cfg.train.epochs:
        outputs.check_cache(cache_dir())  # the baseline goes there: say so now, not after training
    criterion = make_criterion(cfg.prune.criterion)
    data, spec, native = sources.prepare(cfg, given)
    scope = cfg.prune.scope or criterion.default_scope
    run = Run(cfg, device, given, out, criterion, scope, data, spec, native, cfg.prune.plan(scope))
    probe = sources.probe_model(spec, given)
    sources.check_probe(probe, spec, cfg.model.ignore_layers)
    criterion.check(probe)
    build_graph(probe, torch.randn(1, *run.input_shape))
    return run


def baseline(run: Run) -> None:
    dense, run.baseline = dense_model(run.cfg, run.spec, run.data, run.device, run.given)
    run.dense = dense.to(run.device)
    run.dense_acc = evaluate(run.dense, run.data, run.device)


def prune(run: Run) -> None:
    """Structured pruning of a copy of the dense model (``--steps``: finetuned between steps), or, with
    ``--mode masked``, the criterion's mask applied in place."""
    cfg, p = run.cfg, run.cfg.prune
    run.pruned = copy.deepcopy(run.dense).cpu()
    run.ctx = PruneContext(example_inputs=torch.randn(1, *run.input_shape), data=run.data, device=run.device,
                           seed=cfg.train.seed, batch_size=cfg.train.batch_size, calib_batches=p.calib_batches,
                           mask=cfg.mask_config(run.data.num_classes), ignored_layers=tuple(cfg.model.ignore_layers))
    say(f"prune: {p.criterion}, {target_text(p)}, {run.scope}, round_to {p.round_to}, {p.steps} step(s), "
        f"mode {p.mode}")
    if p.mode == "masked":
        run.result = control.mask_in_place(run.pruned, run.criterion, run.ctx)
    else:
        run.result = prune_in_steps(run.pruned, run.criterion, run.plan, run.ctx, run.spec.num_classes, p.steps,
                                    lambda model, i: _finetune_between(run, model, i))
    run.masks = getattr(run.criterion, "dense_masks", None)
    for layer, why in run.result.unprunable.items():
        say(f"warning: left {layer} whole: {why}")
    distributed.check_same_network(run.pruned)  # --distributed: every rank pruned the same channels


def _teacher(run: Run) -> nn.Module | None:
    return run.dense if run.cfg.finetune.distill != "off" else None  # frozen; the pruned copies learn its soft targets


def _finetune_between(run: Run, model: nn.Module, i: int) -> None:
    ft = run.finetune_config
    run.step_histories.append(train(model.to(run.device), run.data, ft, run.device, desc=f"finetune {i}/{run.cfg.prune.steps}",
                                    teacher=_teacher(run)) if ft.epochs else [])
    model.cpu()


def finetune(run: Run) -> None:
    """Finetune the pruned model (distilled from the dense one unless ``--distill off``), and the masked
    control of a mask criterion alike."""
    ft, data, device = run.finetune_config, run.data, run.device
    run.pruned = run.pruned.to(device)
    try:
        run.finetune_history = control.finetune(run.pruned, run.own_masks, ft, data, device, teacher=_teacher(run))
    except NonFiniteLoss as e:
        raise outputs.keep_last_good(run.pruned, last_good_folder("finetune", run.spec), run.spec, e,
                                     run.result.history, {"criterion": run.cfg.prune.criterion,
                                                          "sparsity": run.cfg.prune.sparsity}) from None
    run.pruned_acc = evaluate(run.pruned, data, device)
    if run.own_masks:
        run.masked = control.MaskedModel(run.pruned, run.pruned_acc, run.finetune_history)
    elif run.masks:
        run.masked = control.masked_control(run.dense, run.masks, ft, data, device, _teacher(run))


def scratch(run: Run) -> None:
    """Liu et al. 2019's control: the pruned architecture, freshly initialised (the model's own init on
    the dense shapes, cut by the pruning history) and trained with the baseline recipe for the run's
    total epochs; is the pruned model better than the architecture alone?"""
    cfg = run.cfg.scratch_config(run.data.num_classes)
    torch.manual_seed(cfg.seed + 1)  # another init than the baseline's
    model = ckpt.rebuild(run.spec, run.result.history).to(run.device)
    say(f"scratch: training the pruned architecture from a fresh init for {cfg.epochs} epochs")
    hist = train(model, run.data, cfg, run.device, desc="scratch")
    acc = evaluate(model, run.data, run.device)
    run.scratch = {"epochs": cfg.epochs, "accuracy": acc["top1"] if acc else None,
                   "top5": acc["top5"] if acc else None, "kept_epoch": kept_epoch(hist), "history": hist}


def write_outputs(run: Run, folder: Path) -> None:
    """Fill the staging ``folder``: pruned checkpoint, ONNX files, benchmark rows, report."""
    run.dense, run.pruned = run.dense.cpu().eval(), run.pruned.cpu().eval()
    run.costs = {"dense": counting.count(run.dense, run.input_shape),
                 "pruned": counting.count(run.pruned, run.input_shape, run.own_masks)}
    ckpt.save(run.pruned, folder / "pruned", run.spec, run.result.history, _checkpoint_meta(run))
    if "masked" in _variants(run):  # the masked control's weights, so `filterprune bench RUN_DIR` times it too
        ckpt.save(run.masked.model, folder / "masked", run.spec, [], {**_checkpoint_meta(run), "masked": True})
    if run.cfg.output.export:
        with run.stage("export"):
            export(run, folder)
    if run.cfg.output.bench:
        with run.stage("bench"):
            bench(run, folder)
    write_report(report(run), folder)


def _variants(run: Run) -> dict[str, nn.Module]:
    """What is exported and timed: dense, pruned, and the masked control when it is another model."""
    variants = {"dense": run.dense, "pruned": run.pruned}
    if run.masked and not run.own_masks:
        variants["masked"] = run.masked.model.cpu().eval()
    return variants


def _sparsity(run: Run) -> float:
    asked = run.cfg.target
    return asked.value if isinstance(asked, Sparsity) else run.result.sparsity  # asked, or found by a target


def _checkpoint_meta(run: Run) -> dict:
    data = run.data
    return {"criterion": run.cfg.prune.criterion, "sparsity": _sparsity(run), "scope": run.scope,
            "dataset": data.name, "mean": list(data.mean), "std": list(data.std),
            "class_names": data.class_names, "version": __version__,
            **({"resize_size": data.resize_size} if getattr(data, "resize_size", None) else {})}


def export(run: Run, folder: Path) -> None:
    say("export: ONNX with dynamic batch, checker, onnxruntime parity at batch 1 and 7")
    md = onnx_metadata(run.spec, _checkpoint_meta(run), run.costs["dense"], run.costs["pruned"])
    run.onnx_paths["pruned"] = export_onnx(run.pruned, folder / "model.onnx", run.input_shape, metadata=md)
    run.onnx = {"path": "model.onnx", **check_parity(run.pruned, run.onnx_paths["pruned"], run.input_shape)}
    for name, model in _variants(run).items():
        if name != "pruned":
            run.onnx_paths[name] = export_onnx(model, folder / f"{name}.onnx", run.input_shape)


def bench(run: Run, folder: Path) -> None:
    """Dense vs pruned (vs masked), interleaved, on PyTorch and onnxruntime."""
    cfg, variants = run.cfg.bench, _variants(run)
    say(f"bench: {' vs '.join(variants)}, interleaved, batch sizes {list(cfg.batch_sizes)}, "
        f"{cfg.iters} iterations")
    # how the memory probe's fresh process rebuilds each variant; the masked control has the dense
    # shapes (its zeros are stored), so its PyTorch memory is probed on the dense architecture
    trusted = sources.user_factory.grants([run.spec.name])  # a user factory: the probe may import that code
    kinds = {"dense": "dense", "pruned": "checkpoint", "masked": "dense"}
    run.rows = run_bench([Variant(name, run.input_shape, run.costs.get(name, run.costs["dense"]).params,
                                  run.costs.get(name, run.costs["dense"]).macs, model, run.onnx_paths.get(name),
                                  {"kind": kinds[name], "path": str(folder), "trusted": trusted})
                          for name, model in variants.items()],
                         BenchConfig(devices=("cuda",) if run.device.type == "cuda" else ("cpu",), providers=("cpu",),
                                     batch_sizes=cfg.batch_sizes, warmup=cfg.warmup, iters=cfg.iters,
                                     memory=cfg.memory))


def report(run: Run) -> Report:
    """report.json (README: "What a run writes")."""
    cfg, p, data, result = run.cfg, run.cfg.prune, run.data, run.result
    dense, pruned = run.costs["dense"], run.costs["pruned"]
    return {
        "schema_version": SCHEMA_VERSION,
        "model": run.spec.name, "criterion": p.criterion, "sparsity": _sparsity(run), "scope": run.scope,
        "target_macs": p.target_macs, "steps": p.steps, "latency_target": result.latency_target,
        "round_to": p.round_to, "seed": cfg.train.seed, "device": run.device.type, "processes": distributed.world_size(),
        "dataset": {"name": data.name, "source": data.source, "train": len(data.y_train),
                    "val": 0 if data.y_val is None else len(data.y_val), "test": len(data.y_test)},
        "dense": {**dense.to_dict(), "accuracy": run.dense_acc["top1"], "top5": run.dense_acc["top5"]},
        "pruned": {**pruned.to_dict(), "accuracy": run.pruned_acc["top1"], "top5": run.pruned_acc["top5"]},
        "mode": p.mode,
        "masked": control.section(run.masked, run.masks, run.ctx.mask, run.input_shape, dense) if run.masked else None,
        "theoretical_speedup": dense.macs / pruned.macs,
        "channel_sparsity": channel_sparsity(result.layers),
        "layers": result.layers, "skipped_groups": result.skipped, "unprunable_groups": result.unprunable,
        "onnx": run.onnx,
        "latency": dense_vs_pruned(run.rows), "latency_rows": run.rows,
        "baseline": run.baseline,
        "finetune": {"config": run.finetune_config.to_dict(), "recipe": cfg.finetune.recipe, "distill": cfg.finetune.distill,
                     "kept_epoch": kept_epoch(run.finetune_history), "history": run.finetune_history,
                     "between_steps": run.step_histories},
        "scratch": run.scratch,
        "timings_s": run.timings, "machine": machine.describe(), "version": __version__,
        "model_source": sources.describe(run.spec, run.native, run.baseline.get("pretrained") or getattr(
            run.dense, "filterprune_loaded", None), cfg.model.checkpoint),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.flat().items()},
    }


def target_text(p: Prune) -> str:
    text = p.target.label()
    return f"{text} on {p.target_runtime} at batch {p.target_batch}" if p.target.measured else text


def default_out(cfg: CompressConfig) -> Path:
    """``runs/<model>-<criterion>-<target>``, numbered when taken."""
    stem = Path("runs") / f"{sources.short_name(cfg.model.name)}-{cfg.prune.criterion}-{cfg.target.tag()}"
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

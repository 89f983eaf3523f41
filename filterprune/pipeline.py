"""The two command pipelines: ``run`` (``compress``, a straight line of ``stages``) and
``train_command``. Outputs are built in a staging folder and renamed into place at the end, so an
output folder is either complete or absent. The Python surface over them is ``api``."""
from __future__ import annotations

from pathlib import Path

import torch

from . import distributed, outputs, sources, stages
from . import serialization as ckpt
from .baseline import train_baseline
from .config import CompressConfig
from .data import DATASETS
from .errors import UsageError
from .fileio import cache_dir
from .log import say
from .models import check_model_ref
from .sources import spec_for
from .train import TrainConfig, evaluate, resolve_device


def run(cfg: CompressConfig, given: sources.Given | None = None) -> Path:
    """Run the whole pipeline; returns the output folder (see README for what it holds). ``given``: the
    user's own module and/or DataLoaders (``filterprune.compress(model=net, train=..., test=...)``)."""
    cfg.validate()
    with distributed.session(cfg.distributed, resolve_device(cfg.device), cfg.batch_size) as device:
        return _compress(cfg, device, given)


def _compress(cfg: CompressConfig, device: torch.device, given: sources.Given | None) -> Path:
    run = stages.setup(cfg, device, given)
    with run.stage("baseline"):
        stages.baseline(run)
    with run.stage("prune"):
        stages.prune(run)
    with run.stage("finetune"):
        stages.finetune(run)
    if cfg.scratch:
        with run.stage("scratch"):
            stages.scratch(run)
    if not distributed.is_main():  # --distributed: rank 0 alone exports, benchmarks and writes the outputs
        return run.out
    out = outputs.write_folder(run.out, lambda folder: stages.write_outputs(run, folder), cfg.overwrite)
    dense, pruned = run.costs["dense"], run.costs["pruned"]
    say(f"done: dense top-1 {100 * run.dense_acc['top1']:.2f}% -> pruned {100 * run.pruned_acc['top1']:.2f}%, "
        f"MACs {dense.macs / 1e6:.1f}M -> {pruned.macs / 1e6:.1f}M ({dense.macs / pruned.macs:.2f}x); "
        f"outputs in {out}/")
    return out


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
    data = sources.load_data(dataset, data_root, val_fraction, cfg.seed)
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

"""The two command pipelines: ``run`` (``compress``, a straight line of ``stages``) and
``train_command``. Outputs are built in a staging folder and renamed into place at the end, so an
output folder is either complete or absent. The Python surface over them is ``api``."""
from __future__ import annotations

from pathlib import Path

import torch

from . import distributed, outputs, sources, stages
from . import serialization as ckpt
from .baseline import train_baseline
from .config import CompressConfig, Data, Model, Output, Train
from .fileio import cache_dir
from .log import say
from .sources import spec_for
from .train import TrainConfig, evaluate, resolve_device


def run(cfg: CompressConfig, given: sources.Given | None = None) -> Path:
    """Run the whole pipeline; returns the output folder (see README for what it holds). ``given``: the
    user's own module and/or DataLoaders (``filterprune.compress(model=net, train=..., test=...)``)."""
    cfg.validate()
    t = cfg.train
    with distributed.session(t.distributed, resolve_device(t.device), t.batch_size) as device:
        return _compress(cfg, device, given)


def _compress(cfg: CompressConfig, device: torch.device, given: sources.Given | None) -> Path:
    run = stages.setup(cfg, device, given)
    with run.stage("baseline"):
        stages.baseline(run)
    with run.stage("prune"):
        stages.prune(run)
    with run.stage("finetune"):
        stages.finetune(run)
    if cfg.finetune.scratch:
        with run.stage("scratch"):
            stages.scratch(run)
    if not distributed.is_main():  # --distributed: rank 0 alone exports, benchmarks and writes the outputs
        return run.out
    out = outputs.write_folder(run.out, lambda folder: stages.write_outputs(run, folder), cfg.output.overwrite)
    dense, pruned = run.costs["dense"], run.costs["pruned"]
    say(f"done: dense top-1 {100 * run.dense_acc['top1']:.2f}% -> pruned {100 * run.pruned_acc['top1']:.2f}%, "
        f"MACs {dense.macs / 1e6:.1f}M -> {pruned.macs / 1e6:.1f}M ({dense.macs / pruned.macs:.2f}x); "
        f"outputs in {out}/")
    return out


def train_command(model: Model, data: Data, train: Train, output: Output) -> Path | None:
    """`filterprune train`: train (or reuse) the cached baseline and copy it to ``output.out`` with its
    accuracy. Under ``train.distributed`` it trains with DistributedDataParallel under torchrun (see
    distributed.py). The same options as compress, so that compress reuses the baseline this trains."""
    for group in (model, data, train, output):
        group.validate()
    with distributed.session(train.distributed, resolve_device(train.device), train.batch_size) as device:
        return _train_command(model, data, train.train_config(), device, output)


def _train_command(model: Model, d: Data, cfg: TrainConfig, device: torch.device, output: Output) -> Path | None:
    target = Path(output.out) if output.out else None
    if target:
        outputs.check_target(target, output.overwrite)
    if cfg.epochs:
        outputs.check_cache(cache_dir())
    data = sources.load_data(d.dataset, d.data_root, d.val_fraction, cfg.seed)
    spec = spec_for(sources.model_ref(model.name), data)
    net, info = train_baseline(spec, data, cfg, device)
    if not distributed.is_main():  # --distributed: rank 0 alone evaluates and writes
        return None
    acc = evaluate(net, data, device)
    target = target or Path("runs") / f"train-{model.name.replace(':', '-')}-{info.get('cache_key', 'init')}"
    target = outputs.write_folder(target, lambda folder: ckpt.save(net.cpu(), folder / "model", spec, meta={
        "dataset": data.name, "train": cfg.to_dict(), "accuracy": acc, "mean": list(data.mean),
        "std": list(data.std), "class_names": data.class_names}), output.overwrite)
    say(f"{spec.name} on {data.name}: top-1 {100 * acc['top1']:.2f}%, top-5 {100 * acc['top5']:.2f}% "
        f"({acc['images']} test images); saved to {target}/model.safetensors")
    print(target)
    return target

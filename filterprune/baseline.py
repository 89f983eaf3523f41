"""The dense model a run starts from: the module in hand, the user's checkpoint, or a baseline trained
once per (model, data, recipe) and cached, so that every criterion of a seed prunes the same network."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn

from . import distributed, outputs
from . import serialization as ckpt
from .data import ImageData
from .errors import FilterpruneError, UsageError
from .fileio import cache_dir
from .inputs import Given
from .log import say
from .models import ModelSpec, build_model, factory, initial_model, yolo
from .pruning.graph import build_graph, output_layers
from .reporting import schema
from .state_dict import load_weights, read_state_dict
from .tasks import Task
from .train import NonFiniteLoss, TrainConfig, train

log = logging.getLogger(__name__)


def baseline_key(spec: ModelSpec, data: ImageData, cfg: TrainConfig, task: Task | None = None) -> str:
    """Hash of everything that determines the trained baseline, so every criterion starts from it."""
    ident: dict = {
        "spec": spec.to_dict(),
        "data": [data.name, data.source, len(data.y_train), len(data.y_test)],
        "train": cfg.to_dict(),
        "version": 2,
    }
    if task is not None and task.name != "classification":  # (classification keys stay as they were)
        ident["task"] = task.name
    if data.y_val is not None:  # which images were held out (the split's seed decides them)
        ident["val"] = data.val_digest()
    if distributed.active():  # DDP trains another (equally valid) model than one process does
        ident["world_size"] = distributed.world_size()
    if (digest := factory.code_digest(spec.name)) is not None:  # an edited model file trains anew
        ident["code_sha256"] = digest
    if yolo.is_yolo(spec.name):  # another ultralytics release or an edited yaml may build another net
        ident["ultralytics"] = [yolo.version(), yolo.yaml_digest(spec.name)]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def train_baseline(
    spec: ModelSpec,
    data: ImageData,
    cfg: TrainConfig,
    device: torch.device,
    use_cache: bool = True,
    task: Task | None = None,
) -> tuple[nn.Module, schema.Baseline]:
    """A trained (or, with 0 epochs, freshly initialised) dense model, from the cache when present
    (``task``: how it trains; default classification)."""
    torch.manual_seed(cfg.seed)
    model, loaded = initial_model(spec)  # pretrained weights (tv --weights) when the spec names some
    info: schema.Baseline = {"epochs": cfg.epochs, "train": cfg.to_dict()}
    if loaded:
        info["pretrained"] = loaded
    for key in loaded.get("head_replaced", []) if loaded else []:
        say(
            f"pretrained: {key} replaced ({loaded.get('categories')} classes in the weights, "
            f"{spec.num_classes} in the data): trained from scratch with the rest"
        )
    if cfg.epochs == 0:
        return model, info
    key = baseline_key(spec, data, cfg, task)
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
        info["history"] = train(model, data, cfg, device, desc=f"train {spec.name}", task=task)
    except NonFiniteLoss as e:
        raise outputs.keep_last_good(model, last_good_folder("baseline", spec), spec, e) from None
    if use_cache and distributed.is_main():  # the entry folder appears complete or not at all
        outputs.write_folder(
            path.parent,
            lambda d: ckpt.save(
                model, d / path.name, spec, meta={"dataset": data.name, "train": cfg.to_dict()}
            ),
            overwrite=True,
        )
    return model, info


def dense_model(
    cfg, spec: ModelSpec, data: ImageData, device: torch.device, given: Given | None, task: Task | None = None
) -> tuple[nn.Module, schema.Baseline]:
    """The run's dense model and what the report says about it: the module in hand (``compress(model=)``;
    ``epochs`` train it further), the user's ``--checkpoint`` (``--sparsity-epochs`` of BN sparsity
    training first), or the cached trained baseline."""
    if given is not None and given.model is not None:
        return given_baseline(given.model, data, cfg.baseline_config(), device, train)
    checkpoint, t = cfg.model.checkpoint, cfg.train
    if not checkpoint:
        return train_baseline(spec, data, cfg.baseline_config(), device, task=task)
    dense = load_checkpoint_into(spec, checkpoint)
    info: schema.Baseline = {"checkpoint": str(checkpoint)}
    if t.sparsity_epochs:
        sparsity_cfg = replace(cfg.baseline_config(), epochs=t.sparsity_epochs)
        say(f"sparsity training: {t.sparsity_epochs} epochs, lambda {t.sparsity_reg:g} on BN scales")
        info["sparsity_training"] = {
            "config": sparsity_cfg.to_dict(),
            "history": train(dense.to(device), data, sparsity_cfg, device, desc="sparsity", task=task),
        }
    return dense, info


def given_baseline(model: nn.Module, data, cfg, device, train_fn) -> tuple[nn.Module, schema.Baseline]:
    """The module in hand as the dense baseline; ``cfg.epochs`` > 0 trains it further first (in place)."""
    info: schema.Baseline = {
        "given": f"{type(model).__module__}.{type(model).__qualname__} handed to compress(model=...)"
    }
    if cfg.epochs:
        info["history"] = train_fn(model.to(device), data, cfg, device, desc="train given model")
        info["train"] = cfg.to_dict()
    return model, info


def last_good_folder(stage: str, spec: ModelSpec) -> Path:
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
            raise UsageError(
                f"{path} holds an already pruned {spec.name} ({len(meta['history'])} pruning "
                "steps); --checkpoint takes dense weights (prune the dense model with a higher "
                "--sparsity, or --steps K)"
            )
        return model
    model = build_model(spec)
    replaced = load_checkpoint_weights(model, read_state_dict(p), spec, str(p))
    if replaced:
        say(
            f"checkpoint: classifier head {', '.join(replaced['head_replaced'])} replaced "
            "(another class count); it is trained with the rest"
        )
        setattr(model, "filterprune_loaded", replaced)  # noqa: B010  (read by the report's model_source)
    return model


def _head_keys(model: nn.Module, spec: ModelSpec) -> set[str]:
    """The parameters whose shapes follow the class count: the output layers' (found on the graph); for
    YOLO every tensor of the head's class branches, whose hidden width follows the class count too."""
    if yolo.is_yolo(spec.name):
        return yolo.class_branch_keys(model)
    DG = build_graph(model, torch.randn(1, spec.in_channels, spec.image_size, spec.image_size))
    names = {id(m): n for n, m in model.named_modules()}
    return {f"{names[id(m)]}.{p}" for m in output_layers(DG) for p, _ in m.named_parameters(recurse=False)}


def load_checkpoint_weights(model: nn.Module, state: dict, spec: ModelSpec, source: str) -> dict:
    """Weights of a user's checkpoint into ``model``; for tv:/timm:/yolo: models a checkpoint with another
    class count (ImageNet's 1000, COCO's 80) keeps everything but the output layers (YOLO: its class
    branches), which stay fresh (and are trained). Returns what was replaced."""
    own = model.state_dict()
    mismatched = {k for k in own if k in state and state[k].shape != own[k].shape}
    replaceable = spec.name.startswith(("tv:", "timm:", "yolo:")) and mismatched and set(state) == set(own)
    if replaceable and mismatched <= _head_keys(model, spec):
        load_weights(model, {**state, **{k: own[k] for k in mismatched}}, source)
        log.info(
            "checkpoint %s: classifier head %s replaced (another class count)", source, sorted(mismatched)
        )
        return {"head_replaced": sorted(mismatched)}
    load_weights(model, state, source)
    return {}

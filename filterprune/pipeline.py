"""The two command pipelines: ``run`` (``compress``, a straight line of ``stages``) and
``train_command``. Outputs are built in a staging folder and renamed into place at the end, so an
output folder is either complete or absent. The Python surface over them is ``api``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from . import distributed, outputs, stages
from . import serialization as ckpt
from .baseline import train_baseline
from .config import CompressConfig, Data, Model, Output, Train
from .data import load_data
from .dataworkers import workers_watched
from .errors import UsageError
from .fileio import cache_dir
from .inputs import Given
from .log import log, say
from .models.refs import model_ref, spec_for
from .reporting.run_report import write_report
from .reporting.schema import Latency, Report
from .tasks import make_task
from .train import TrainConfig, evaluate, resolve_device


@dataclass(frozen=True)
class Compressed:
    """What ``compress`` made: its output folder (``os.fspath(result)`` is the folder, so
    ``filterprune.load(result)`` works) and the run's report (report.json, typed)."""

    out: Path
    report: Report

    def __fspath__(self) -> str:
        return str(self.out)

    @property
    def dense_accuracy(self) -> float:
        return self.report["dense"]["accuracy"]

    @property
    def pruned_accuracy(self) -> float:
        return self.report["pruned"]["accuracy"]

    @property
    def theoretical_speedup(self) -> float:
        return self.report["theoretical_speedup"]

    @property
    def latency(self) -> list[Latency]:
        """Dense vs pruned per runtime, device and batch (``speedup`` measured, interleaved)."""
        return self.report["latency"]


def run(cfg: CompressConfig, given: Given | None = None) -> Compressed | None:
    """Run the whole pipeline (README: what a run writes). ``given``: the user's own module and/or
    DataLoaders (``filterprune.compress(model=net, train=..., test=...)``). None on the ranks of a
    ``--distributed`` run that do not write."""
    cfg.validate()
    if ignored := cfg.ignored():
        log.warning(f"criterion {cfg.prune.criterion} does not read {', '.join(ignored)}: ignored")
    t = cfg.train
    with workers_watched(), distributed.session(t.distributed, resolve_device(t.device), t.batch_size) as dev:
        return _compress(cfg, dev, given)


def _compress(cfg: CompressConfig, device: torch.device, given: Given | None) -> Compressed | None:
    timings: dict[str, float] = {}
    s = stages.setup(cfg, device, given)
    with stages.timed(timings, "baseline"):
        b = stages.baseline(s)
    with stages.timed(timings, "prune"):
        p = stages.prune(s, b)
    with stages.timed(timings, "finetune"):
        f = stages.finetune(s, b, p)
    scratch = None
    if cfg.finetune.scratch:
        with stages.timed(timings, "scratch"):
            scratch = stages.scratch(s, p)
    if not distributed.is_main():  # --distributed: rank 0 alone exports, benchmarks and writes the outputs
        return None
    written: dict[str, Report] = {}

    def fill(folder: Path) -> None:
        artifacts = stages.write_outputs(s, b, p, f, folder, timings)
        written["report"] = stages.report(s, b, p, f, scratch, artifacts, timings)
        write_report(written["report"], folder)

    out = outputs.write_folder(s.out, fill, cfg.output.overwrite)
    r = written["report"]
    label = s.task.metrics[s.task.headline]
    say(
        f"done: dense {label} {100 * r['dense']['accuracy']:.2f}% "
        f"-> pruned {100 * r['pruned']['accuracy']:.2f}%, "
        f"MACs {r['dense']['macs'] / 1e6:.1f}M -> {r['pruned']['macs'] / 1e6:.1f}M "
        f"({r['theoretical_speedup']:.2f}x); outputs in {out}/"
    )
    return Compressed(Path(out), r)


def train_command(model: Model, data: Data, train: Train, output: Output) -> Path | None:
    """`filterprune train`: train (or reuse) the cached baseline and copy it to ``output.out`` with its
    accuracy. Under ``train.distributed`` it trains with DistributedDataParallel under torchrun (see
    distributed.py). The same options as compress, so that compress reuses the baseline this trains."""
    for group in (model, data, train, output):
        group.validate()
    if data.task != "classification":
        raise UsageError(
            f"train trains classifiers; the baseline of task {data.task} is trained by compress", ("task",)
        )
    make_task(data.task).check_model_name(model.name)
    with (
        workers_watched(),
        distributed.session(train.distributed, resolve_device(train.device), train.batch_size) as device,
    ):
        return _train_command(model, data, train.train_config(), device, output)


def _train_command(
    model: Model, d: Data, cfg: TrainConfig, device: torch.device, output: Output
) -> Path | None:
    target = Path(output.out) if output.out else None
    if target:
        outputs.check_target(target, output.overwrite)
    if cfg.epochs:
        outputs.check_cache(cache_dir())
    data = load_data(d.dataset, d.data_root, d.val_fraction, cfg.seed)
    spec = spec_for(model_ref(model.name), data)
    net, info = train_baseline(spec, data, cfg, device)
    if not distributed.is_main():  # --distributed: rank 0 alone evaluates and writes
        return None
    acc = evaluate(net, data, device)
    assert acc is not None  # rank 0 evaluates
    target = target or Path("runs") / f"train-{model.name.replace(':', '-')}-{info.get('cache_key', 'init')}"
    target = outputs.write_folder(
        target,
        lambda folder: ckpt.save(
            net.cpu(),
            folder / "model",
            spec,
            meta={
                "dataset": data.name,
                "train": cfg.to_dict(),
                "accuracy": acc,
                "mean": list(data.mean),
                "std": list(data.std),
                "class_names": data.class_names,
            },
        ),
        output.overwrite,
    )
    say(
        f"{spec.name} on {data.name}: top-1 {100 * acc['top1']:.2f}%, top-5 {100 * acc['top5']:.2f}% "
        f"({acc['images']} test images); saved to {target}/model.safetensors"
    )
    print(target)
    return target

"""Command line: flags -> config dataclasses -> ``api`` calls. Nothing else lives here.

Every failure a user can cause ends in one line on stderr and exit 2 (usage) or 1 (runtime).
"""
from __future__ import annotations

import argparse

from .config import CompressConfig
from .errors import UsageError
from .guard import guarded
from .options import add_flags, int_list, str_list, values


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or an integer, got {text!r}") from None


TRAIN_OPTIONS = ("model", "dataset", "data_root", "epochs", "batch_size", "optimizer", "lr", "schedule", "sparsity_reg",
                 "device", "seed", "val_fraction", "distributed")  # the CompressConfig fields `train` takes


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="filterprune", description="Structured filter pruning with real speedup.")
    parser.add_argument("--version", action="version", version=f"filterprune {__import__('filterprune').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("compress", help="train/load -> prune -> finetune -> ONNX -> benchmark -> report")
    add_flags(c, CompressConfig)  # one flag per CompressConfig field, from the field's own help and type

    e = sub.add_parser("export", help="a run folder or checkpoint -> checked ONNX file with metadata and parity")
    e.add_argument("source", help="run folder (from compress), X.json or X.safetensors")
    e.add_argument("--out", required=True, help="the .onnx file to write")
    e.add_argument("--opset", type=int, default=17)
    e.add_argument("--batch", type=_batch, default=None, help="'dynamic' (default) or a fixed batch size")
    e.add_argument("--fp16", action="store_true", help="half-precision weights, inputs and outputs")
    e.add_argument("--simplify", action="store_true", help="simplify with onnxslim (parity re-checked)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    e.add_argument("--trust-code", action="store_true",
                   help="a run of your own model factory: allow importing its code to rebuild it")

    t = sub.add_parser("train", help="train a dense baseline (cached by its config) and evaluate top-1/top-5")
    add_flags(t, CompressConfig, only=TRAIN_OPTIONS)
    t.add_argument("--out", default=None, help="folder for model.safetensors + model.json")
    t.add_argument("--overwrite", action="store_true")

    b = sub.add_parser("bench", help="latency, throughput and memory of dense vs pruned (vs masked), side by side")
    b.add_argument("targets", nargs="+", help="compress output folders and/or .onnx files (the first is the baseline)")
    b.add_argument("--runtime", type=str_list, default=("torch", "onnxruntime"), help="torch,onnxruntime (default), openvino (pip install 'filterprune[openvino]'; from the same ONNX files)")
    b.add_argument("--device", type=str_list, default=("auto",), help="torch devices: auto, cpu, cuda")
    b.add_argument("--provider", type=str_list, default=("auto",),
                   help="onnxruntime providers: auto (all present), cpu, cuda, tensorrt")
    b.add_argument("--batch-sizes", type=int_list, default=(1, 8, 64, 256))
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--iters", type=int, default=30)
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    b.add_argument("--fp16", action="store_true", help="fp16 autocast on CUDA / TensorRT fp16")
    b.add_argument("--compile", action="store_true", help="torch.compile the PyTorch models")
    b.add_argument("--no-memory", action="store_true", help="skip the per-variant CPU peak-RSS probes")
    b.add_argument("--out", default="bench", help="folder for bench.csv, bench.md, bench.json and plots")
    b.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    b.add_argument("--trust-code", action="store_true",
                   help="runs of your own model factory: allow importing its code to rebuild them")

    sw = sub.add_parser("sweep", help="run a YAML grid of compress runs into one folder, resumably")
    sw.add_argument("config", help="sweep file (see configs/ and README: Sweeps)")
    sw.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local: one run at a time, each in its own process; ray: each run a Ray task")
    sw.add_argument("--resume", action="store_true", help="continue the sweep in --out: skip finished runs")
    sw.add_argument("--out", default=None, help="sweep folder (default: sweeps/<name>)")
    sw.add_argument("--dry-run", action="store_true", help="list the runs and their ids; run nothing")

    r = sub.add_parser("report", help="tables (mean ± std over seeds) and figures of many compress runs")
    r.add_argument("folder", help="a sweep folder (DIR/runs/*/report.json) or a folder of compress output folders")
    r.add_argument("--out", default=None, help="output folder (default: FOLDER/report; a previous report is replaced)")
    r.add_argument("--runtime", default="onnxruntime", help="test time from: onnxruntime, torch, torch:cuda")
    r.add_argument("--batch-size", type=int, default=None,
                   help="test time at this benchmark batch size (default: the largest the runs were timed at)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a report")

    ls = sub.add_parser("list", help="list registered models, criteria or datasets")
    ls.add_argument("what", choices=["models", "criteria", "datasets"])
    return parser


def _compress(a) -> None:
    from .pipeline import run

    run(CompressConfig(**values(CompressConfig, a)))


def _trust(a) -> None:
    if getattr(a, "trust_code", False):
        from .models import factory

        factory.trust_all()


def _export(a) -> None:
    from .export.command import ExportConfig, export_command

    _trust(a)
    export_command(ExportConfig(source=a.source, out=a.out, opset=a.opset, batch=a.batch, fp16=a.fp16,
                                simplify=a.simplify, overwrite=a.overwrite))


def _train(a) -> None:
    from .pipeline import train_command
    from .train import TrainConfig

    cfg = TrainConfig(epochs=a.epochs, optimizer=a.optimizer, lr=a.lr, schedule=a.schedule,
                      batch_size=a.batch_size, sparsity_reg=a.sparsity_reg, seed=a.seed)
    train_command(a.model, a.dataset, a.data_root, cfg, a.device, a.out, a.overwrite, ddp=a.distributed,
                  val_fraction=a.val_fraction)


def _bench(a) -> None:
    from pathlib import Path

    from .bench.command import bench
    from .bench.config import BenchConfig

    _trust(a)
    cfg = BenchConfig(runtimes=a.runtime, devices=a.device, providers=a.provider, batch_sizes=a.batch_sizes,
                      warmup=a.warmup, iters=a.iters, threads=a.threads, fp16=a.fp16, compile=a.compile,
                      memory=not a.no_memory)
    bench([Path(t) for t in a.targets], cfg, Path(a.out), overwrite=a.overwrite)
    print(Path(a.out) / "bench.csv")


def _sweep(a) -> None:
    from .sweep import sweep

    sweep(a.config, a.executor, a.resume, a.out, a.dry_run)


def _report(a) -> None:
    from .reporting import report

    print(report(a.folder, a.out, a.runtime, a.batch_size, a.overwrite) / "report.md")


def _list(a) -> None:
    from .criteria import CRITERIA
    from .data import DATASETS
    from .models import MODELS

    reg = {"models": MODELS, "criteria": CRITERIA, "datasets": DATASETS}[a.what]
    for name in reg.names():
        print(f"{name:20s} {reg.help(name)}")


def main(argv: list[str] | None = None) -> int:
    def dispatch():
        args = build_parser().parse_args(argv)
        {"compress": _compress, "export": _export, "train": _train, "bench": _bench, "sweep": _sweep,
         "report": _report, "list": _list}[args.command](args)

    return guarded(dispatch, sigterm=argv is None)  # a library call keeps its own SIGTERM handling



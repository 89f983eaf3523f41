"""Command line: flags -> config dataclasses -> ``api`` calls. Nothing else lives here.

Every failure a user can cause ends in one line on stderr and exit 2 (usage) or 1 (runtime).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings

from .errors import FilterpruneError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _round_to(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'dynamic' or an integer, got {text!r}") from None


def _common_training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default=None, help="dataset name (default: cifar10 if found under --data-root, else digits)")
    p.add_argument("--data-root", default="data", help="folder holding datasets (default: ./data)")
    p.add_argument("--epochs", type=int, default=10, help="baseline training epochs (0 = untrained model)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.02 sgd, 1e-3 adam)")
    p.add_argument("--schedule", choices=["step", "cosine"], default="cosine")
    p.add_argument("--sparsity-reg", type=float, default=0.0,
                   help="network-slimming L1 strength on BN scales during baseline training")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the training images held out (per class, drawn with --seed) to choose the "
                        "kept epoch; never the test split; 0 = keep the last epoch (default 0.1)")
    p.add_argument("--distributed", action="store_true",
                   help="DDP training under torchrun (--batch-size is then the global batch): "
                        "torchrun --nproc_per_node N -m filterprune ... --distributed")


def _model_sources(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the model and the images (your own model, pretrained weights, image folders)")
    g.add_argument("--model-args", default=None, metavar="JSON",
                   help="keyword arguments for the model's factory or builder, a JSON object")
    g.add_argument("--weights", default=None, metavar="NAME",
                   help="tv:/timm: pretrained weights, DEFAULT or an enum name (e.g. IMAGENET1K_V1), read from the "
                        "local torch hub / timm cache (nothing is downloaded)")
    g.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="imagefolder: input side (default: the model's native input, 224 for ImageNet tv/timm "
                        "models, 32 for the CIFAR ones)")
    g.add_argument("--train-subset", type=int, default=None, metavar="N",
                   help="imagefolder: train on a seeded random subset of N images")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="imagefolder: DataLoader worker processes (default: min(4, CPUs))")
    g.add_argument("--ignore-layers", type=_str_list, default=(), metavar="NAME,...",
                   help="layers (module names) to keep whole besides the output layers")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="filterprune", description="Structured filter pruning with real speedup.")
    parser.add_argument("--version", action="version", version=f"filterprune {__import__('filterprune').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("compress", help="train/load -> prune -> finetune -> ONNX -> benchmark -> report")
    c.add_argument("model", help="model: a registered name (`filterprune list models`), tv:<name>, timm:<name>, "
                                 "or your own factory path/to/file.py:fn or package.module:fn")
    c.add_argument("--criterion", required=True, help="channel criterion (see `filterprune list criteria`)")
    c.add_argument("--sparsity", type=float, default=None,
                   help="fraction of channels to remove, in [0, 1) (or give --target-macs)")
    c.add_argument("--target-macs", type=float, default=None, metavar="F",
                   help="prune until MACs <= F x dense, F in (0, 1] (instead of --sparsity)")
    c.add_argument("--steps", type=int, default=1, help="reach the target in K prune -> finetune cycles")
    _common_training(c)
    c.add_argument("--checkpoint", default=None, help="dense weights to prune instead of training a baseline")
    c.add_argument("--sparsity-epochs", type=int, default=0,
                   help="sparsity-train the --checkpoint for N epochs with --sparsity-reg before pruning")
    c.add_argument("--finetune-epochs", type=int, default=None, help="default: the recipe's (8; lajic: 10)")
    c.add_argument("--finetune-lr", type=float, default=None,
                   help="default: the recipe's (half the baseline lr; lajic: 1e-3)")
    c.add_argument("--recipe", default="default",
                   help="finetune preset: default (the baseline's optimizer and schedule at half its lr, warm-up, 8 "
                        "epochs), lajic (the seed study's: SGD 1e-3 -> 1e-4 -> 1e-5, batch 32, rotation + flip, 10 "
                        "epochs / 20 for 100 classes) or plain (a tenth of the baseline lr, 3 epochs)")
    c.add_argument("--distill", default="kd",
                   help="kd (default): finetuning distills from the dense model; off: plain cross-entropy")
    c.add_argument("--distill-alpha", type=float, default=0.7,
                   help="weight of the dense model's soft targets in [0, 1] (default 0.7)")
    c.add_argument("--distill-temperature", type=float, default=4.0, help="softmax temperature > 0 (default 4)")
    c.add_argument("--scratch", action="store_true",
                   help="control: also train the pruned architecture from a fresh init for the same total epochs")
    c.add_argument("--scope", choices=["layerwise", "global"], default=None,
                   help="allocation (default: the criterion's own; slimming is global, others layerwise)")
    c.add_argument("--round-to", type=_round_to, default=1,
                   help="round kept channels to a multiple of K, or 'auto': widths chosen from latencies measured "
                        "on --target-runtime at --target-batch")
    c.add_argument("--target-runtime", default="onnxruntime", help="for --round-to auto: onnxruntime, torch, torch:cuda")
    c.add_argument("--target-batch", type=int, default=64, help="for --round-to auto")
    c.add_argument("--layer-floor", type=float, default=0.1, help="each layer keeps at least this fraction")
    c.add_argument("--calib-batches", type=int, default=8, help="batches for data-driven criteria")
    c.add_argument("--out", default=None, help="output folder (default: runs/<model>-<criterion>-s<sparsity>)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    c.add_argument("--no-export", action="store_true", help="skip ONNX export (and onnxruntime timing)")
    c.add_argument("--no-bench", action="store_true", help="skip the latency benchmark")
    c.add_argument("--bench-batch-sizes", type=_int_list, default=(1, 32))
    c.add_argument("--bench-iters", type=int, default=20)
    c.add_argument("--bench-memory", action="store_true",
                   help="also record CPU peak RSS per variant (a fresh process per row, a few seconds each)")
    _model_sources(c)
    m = c.add_argument_group("mask criteria (snip, grasp, synflow, mag, rand, imp)")
    m.add_argument("--mode", choices=["shrink", "masked"], default="shrink",
                   help="shrink: remove channels (and time the masked model as a control); masked: only zero weights")
    m.add_argument("--compression", type=float, default=None,
                   help="mask keeps 10^-c of the weights (default: -2*log10(1-sparsity), 0.444 at s=0.4)")
    m.add_argument("--mask-scope", choices=["global", "layerwise"], default="global")
    m.add_argument("--mask-reduce", choices=["density", "sum"], default="density",
                   help="channel saliency: fraction of the filter the mask keeps, or its kept score sum")
    m.add_argument("--imp-iterations", type=int, default=2, help="IMP train-prune-rewind cycles (>= 1)")
    m.add_argument("--imp-epochs", type=int, default=None, help="training epochs per IMP cycle (default: --finetune-epochs)")

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
    t.add_argument("model")
    _common_training(t)
    t.add_argument("--out", default=None, help="folder for model.safetensors + model.json")
    t.add_argument("--overwrite", action="store_true")

    b = sub.add_parser("bench", help="latency, throughput and memory of dense vs pruned (vs masked), side by side")
    b.add_argument("targets", nargs="+", help="compress output folders and/or .onnx files (the first is the baseline)")
    b.add_argument("--runtime", type=_str_list, default=("torch", "onnxruntime"), help="torch,onnxruntime")
    b.add_argument("--device", type=_str_list, default=("auto",), help="torch devices: auto, cpu, cuda")
    b.add_argument("--provider", type=_str_list, default=("auto",),
                   help="onnxruntime providers: auto (all present), cpu, cuda, tensorrt")
    b.add_argument("--batch-sizes", type=_int_list, default=(1, 8, 64, 256))
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--iters", type=int, default=30)
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    b.add_argument("--fp16", action="store_true", help="fp16 autocast on CUDA / TensorRT fp16")
    b.add_argument("--compile", action="store_true", help="torch.compile the PyTorch models")
    b.add_argument("--no-memory", action="store_true", help="skip the per-variant CPU peak-RSS probes")
    b.add_argument("--out", default="bench", help="folder for bench.csv, bench.md, bench.json and plots")
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
    from .api import CompressConfig, compress

    compress(CompressConfig(
        model=a.model, criterion=a.criterion, sparsity=a.sparsity, dataset=a.dataset, data_root=a.data_root,
        checkpoint=a.checkpoint, epochs=a.epochs, finetune_epochs=a.finetune_epochs, batch_size=a.batch_size,
        optimizer=a.optimizer, lr=a.lr, finetune_lr=a.finetune_lr, schedule=a.schedule,
        sparsity_reg=a.sparsity_reg, scope=a.scope, round_to=a.round_to, layer_floor=a.layer_floor,
        target_runtime=a.target_runtime, target_batch=a.target_batch,
        calib_batches=a.calib_batches, target_macs=a.target_macs, steps=a.steps,
        sparsity_epochs=a.sparsity_epochs, device=a.device, seed=a.seed, out=a.out, overwrite=a.overwrite,
        export=not a.no_export, bench=not a.no_bench, bench_batch_sizes=a.bench_batch_sizes,
        bench_iters=a.bench_iters, bench_memory=a.bench_memory, mode=a.mode, compression=a.compression,
        mask_scope=a.mask_scope, mask_reduce=a.mask_reduce, imp_iterations=a.imp_iterations,
        imp_epochs=a.imp_epochs, distributed=a.distributed, recipe=a.recipe, distill=a.distill,
        distill_alpha=a.distill_alpha, distill_temperature=a.distill_temperature, val_fraction=a.val_fraction,
        scratch=a.scratch,
        model_args=_model_args(a.model_args), weights=a.weights, image_size=a.image_size,
        train_subset=a.train_subset, workers=a.workers, ignore_layers=a.ignore_layers))


def _model_args(text: str | None) -> dict | None:
    from .sources import parse_model_args

    return parse_model_args(text) if text is not None else None


def _trust(a) -> None:
    if getattr(a, "trust_code", False):
        from .models import factory

        factory.trust_all()


def _export(a) -> None:
    from .deploy import ExportConfig, export_command

    _trust(a)
    export_command(ExportConfig(source=a.source, out=a.out, opset=a.opset, batch=a.batch, fp16=a.fp16,
                                simplify=a.simplify, overwrite=a.overwrite))


def _train(a) -> None:
    from .api import train_command
    from .train import TrainConfig

    cfg = TrainConfig(epochs=a.epochs, optimizer=a.optimizer, lr=a.lr, schedule=a.schedule,
                      batch_size=a.batch_size, sparsity_reg=a.sparsity_reg, seed=a.seed)
    train_command(a.model, a.dataset, a.data_root, cfg, a.device, a.out, a.overwrite, ddp=a.distributed,
                  val_fraction=a.val_fraction)


def _bench(a) -> None:
    from pathlib import Path

    from .bench.suite import BenchConfig, bench

    _trust(a)
    cfg = BenchConfig(runtimes=a.runtime, devices=a.device, providers=a.provider, batch_sizes=a.batch_sizes,
                      warmup=a.warmup, iters=a.iters, threads=a.threads, fp16=a.fp16, compile=a.compile,
                      memory=not a.no_memory)
    bench([Path(t) for t in a.targets], cfg, Path(a.out), log=lambda m: print(f"[filterprune] {m}", file=sys.stderr))
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


def _print_warning(message, category, filename, lineno, file=None, line=None):
    print(f"[filterprune] warning: {_one_line(str(message))}", file=sys.stderr)


def _one_line(message: str) -> str:
    """User-supplied values (a path, a flag) may hold newlines or control characters: escape them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message).strip()


def _terminated(signum, frame):  # SIGTERM unwinds like Ctrl-C, so staging folders are cleaned up
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    def dispatch():
        args = build_parser().parse_args(argv)
        {"compress": _compress, "export": _export, "train": _train, "bench": _bench, "sweep": _sweep,
         "report": _report, "list": _list}[args.command](args)

    return guarded(dispatch, sigterm=argv is None)  # a library call keeps its own SIGTERM handling


def guarded(action, sigterm: bool = False) -> int:
    """Run ``action`` under the command-line contract: each warning one line, every failure one line
    on stderr and an exit code (2 usage, 1 runtime, 130 interrupted), never a traceback."""
    with warnings.catch_warnings():  # every run says its own warnings, even a second run in one process
        warnings.simplefilter("always", UserWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch_pruning")
        warnings.filterwarnings("ignore", category=UserWarning, module="onnxruntime")
        warnings.showwarning = _print_warning
        if sigterm:
            signal.signal(signal.SIGTERM, _terminated)
        return _guarded(action)


def _guarded(action) -> int:
    try:
        action()
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
        return 0
    except FilterpruneError as e:
        print(f"filterprune: error: {_one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("filterprune: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help / --version, SIGTERM
        if isinstance(e.code, int) and e.code > 128:
            print("filterprune: terminated", file=sys.stderr)
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 1
    except BrokenPipeError:  # `filterprune list models | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        print("filterprune: error: out of memory (lower --batch-size, or use a smaller model)", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permission denied, ...: the environment, not a bug
        where = f": {e.filename}" if e.filename else ""
        print(f"filterprune: error: {_one_line(f'{e.strerror or str(e) or type(e).__name__}{where}')}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: still one line, the traceback only on request
        if os.environ.get("FILTERPRUNE_DEBUG"):
            raise
        first = _one_line(str(e))[:300]
        print(f"filterprune: internal error: {type(e).__name__}: {first} (set FILTERPRUNE_DEBUG=1 for the "
              "traceback)", file=sys.stderr)
        return 1

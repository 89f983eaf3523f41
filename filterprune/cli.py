"""Command line: flags -> config dataclasses -> ``api`` calls. Nothing else lives here.

Every failure a user can cause ends in one line on stderr and exit 2 (usage) or 1 (runtime).
"""

from __future__ import annotations

import argparse
import sys

from . import reporting  # cheap: its report (pandas, torch) loads on first use
from .catalog import CRITERIA, DATASETS, MODELS
from .config import DEFAULT_DATA_ROOT, GROUPS, TITLES, Bench, CompressConfig, Export, all_keys
from .errors import UsageError
from .guard import Exit, finish, guarded
from .limits import cap_threads
from .log import quiet
from .options import add_flags, flag_words, from_flat, str_list, values


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, no usage dump
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status=0, message=None):  # --help, --version: told apart from a sys.exit in user code
        if message:
            self._print_message(message, sys.stderr)
        raise Exit(status)


TRAIN_KEYS = {
    "model": ("model",),
    "data": ("dataset", "data_root", "val_fraction"),
    "output": ("out", "overwrite"),
    "train": (
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "schedule",
        "sparsity_reg",
        "device",
        "seed",
        "distributed",
    ),
}  # the options `filterprune train` takes, by group
QUANT_KEYS = ("precision", "calib_images", "max_int8_drop")  # the Bench group's deployment options


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="filterprune", description="Structured filter pruning with real speedup.")
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="only warnings and errors on stderr (no progress bars or stage lines)",
    )
    parser.add_argument(
        "--version", action="version", version=f"filterprune {__import__('filterprune').__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (
        _add_compress,
        _add_export,
        _add_train,
        _add_bench,
        _add_sweep,
        _add_report,
        _add_make_detection_set,
        _add_list,
    ):
        add(sub)
    return parser


def _add_compress(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("compress", help="train/load -> prune -> finetune -> ONNX -> benchmark -> report")
    for (
        name,
        group,
    ) in GROUPS.items():  # one flag per option, grouped by stage, from the field's help and type
        add_flags(c, group, title=TITLES[name])


def _add_export(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser(
        "export", help="a run folder or checkpoint -> checked ONNX file with metadata and parity"
    )
    add_flags(e, Export)
    add_flags(e, Bench, only=QUANT_KEYS[:2])  # compress's --precision and --calib-images, same defaults
    e.add_argument(
        "--trust-code",
        action="store_true",
        help="a run of your own model factory: allow importing its code to rebuild it",
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train a dense baseline (cached by its config) and evaluate top-1/top-5")
    for name, keys in TRAIN_KEYS.items():
        add_flags(t, GROUPS[name], title=TITLES[name], only=keys)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench", help="latency, throughput and memory of dense vs pruned (vs masked), side by side"
    )
    b.add_argument(
        "targets", nargs="+", help="compress output folders and/or .onnx files (the first is the baseline)"
    )
    b.add_argument(
        "--runtime",
        type=str_list,
        default=("torch", "onnxruntime"),
        help="torch,onnxruntime (default), openvino (pip install 'filterprune[openvino]'; "
        "from the same ONNX files)",
    )
    b.add_argument("--device", type=str_list, default=("auto",), help="torch devices: auto, cpu, cuda")
    b.add_argument(
        "--provider",
        type=str_list,
        default=("auto",),
        help="onnxruntime providers: auto (all present), cpu, cuda, tensorrt",
    )
    add_flags(
        b,
        Bench,
        title=TITLES["bench"],
        keyed=False,  # compress's --bench-* options, same defaults
        only=[k for k in all_keys() if all_keys()[k] == "bench" and k not in QUANT_KEYS[1:]],
    )
    _add_bench_run_flags(b)


def _add_bench_run_flags(b: argparse.ArgumentParser) -> None:
    """bench's own flags after the shared timing options: threads, precision, compile, output."""
    b.add_argument(
        "--no-memory", action="store_true", help=argparse.SUPPRESS
    )  # the default now; still accepted
    b.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    b.add_argument(
        "--fp16", action="store_true", help="fp16 autocast on CUDA (bf16 on the CPU) / TensorRT fp16"
    )
    b.add_argument("--compile", action="store_true", help="torch.compile the PyTorch models")
    b.add_argument("--out", default="bench", help="folder for bench.csv, bench.md, bench.json and plots")
    b.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty --out")
    b.add_argument(
        "--trust-code",
        action="store_true",
        help="runs of your own model factory: allow importing its code to rebuild them",
    )


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    sw = sub.add_parser("sweep", help="run a YAML grid of compress runs into one folder, resumably")
    sw.add_argument("config", help="sweep file (see configs/ and README: Sweeps)")
    sw.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: one run at a time, each in its own process; ray: each run a Ray task",
    )
    sw.add_argument("--resume", action="store_true", help="continue the sweep in --out: skip finished runs")
    sw.add_argument("--out", default=None, help="sweep folder (default: sweeps/<name>)")
    sw.add_argument("--dry-run", action="store_true", help="list the runs and their ids; run nothing")
    sw.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="replace a base key of the sweep file (repeatable), e.g. --set data_root=../data",
    )


def _add_report(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("report", help="tables (mean ± std over seeds) and figures of many compress runs")
    r.add_argument(
        "folder", help="a sweep folder (DIR/runs/*/report.json) or a folder of compress output folders"
    )
    r.add_argument(
        "--out", default=None, help="output folder (default: FOLDER/report; a previous report is replaced)"
    )
    r.add_argument("--runtime", default="onnxruntime", help="test time from: onnxruntime, torch, torch:cuda")
    r.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="test time at this benchmark batch size (default: the largest the runs were timed at)",
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not a report")


def _add_list(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list registered models, criteria or datasets")
    ls.add_argument("what", choices=["models", "criteria", "datasets"])


def _add_make_detection_set(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "make-detection-set",
        help="a reproducible real-image detection set (CIFAR photos pasted on CIFAR backgrounds) "
        "in the COCO or YOLO layout, read back by --dataset coco:OUT / yolo:OUT, or as segmentation "
        "masks (--layout masks), read back by --dataset masks:OUT",
    )
    m.add_argument("out", help="folder to create")
    m.add_argument(
        "--layout",
        choices=["coco", "yolo", "masks"],
        default="coco",
        help="annotation layout (default coco); masks: each object's box painted with its class + 1",
    )
    m.add_argument("--train", type=int, default=2000, help="training canvases (default 2000)")
    m.add_argument("--test", type=int, default=400, help="test canvases (default 400)")
    m.add_argument("--seed", type=int, default=0, help="the same seed makes the same set")
    m.add_argument(
        "--source",
        default=f"{DEFAULT_DATA_ROOT}/cifar10_mini.npz",
        help="npz of photos: x_train/y_train/x_test/y_test uint8 NCHW, label_names (default %(default)s)",
    )
    m.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty OUT")


def _compress(a) -> None:
    from .pipeline import run  # torch, onnx: parsing, --help and errors in flags never import them

    run(CompressConfig.of(**{k: getattr(a, k) for k in all_keys()}))


def _trust(a) -> None:
    if getattr(a, "trust_code", False):
        from .models import factory  # imports torch (see _compress)

        factory.trust_all()


def _export(a) -> None:
    from .exporting.command import export_command  # torch, onnx (see _compress)

    _trust(a)
    export_command(Export(**values(Export, a)), from_flat(Bench, values(Bench, a)))


def _train(a) -> None:
    from .pipeline import train_command  # torch, onnx (see _compress)

    groups = {name: from_flat(GROUPS[name], values(GROUPS[name], a), strict=False) for name in TRAIN_KEYS}
    train_command(groups["model"], groups["data"], groups["train"], groups["output"])


def _bench(a) -> None:
    from pathlib import Path

    from .benchmarking.command import bench  # torch, onnx (see _compress)
    from .benchmarking.config import BenchConfig  # imports torch (see _compress)

    _trust(a)
    timing = from_flat(Bench, values(Bench, a))
    timing.validate()
    cfg = BenchConfig(
        runtimes=a.runtime,
        devices=a.device,
        providers=a.provider,
        batch_sizes=timing.batch_sizes,
        warmup=timing.warmup,
        iters=timing.iters,
        threads=cap_threads(a.threads),
        fp16=a.fp16,
        compile=a.compile,
        memory=timing.memory,
        precisions=timing.precision,
    )
    bench([Path(t) for t in a.targets], cfg, Path(a.out), overwrite=a.overwrite)
    print(Path(a.out) / "bench.csv")


def _sweep(a) -> None:
    from .sweep import sweep  # imports torch (see _compress)
    from .sweep.grid import parse_set  # the sweep package: torch (see _compress)

    sweep(a.config, a.executor, a.resume, a.out, a.dry_run, parse_set(a.overrides))


def _report(a) -> None:
    print(reporting.report(a.folder, a.out, a.runtime, a.batch_size, a.overwrite) / "report.md")


def _make_detection_set(a) -> None:
    from .data.pasted import make_detection_set  # numpy, Pillow, torch (see _compress)

    print(make_detection_set(a.out, a.layout, a.train, a.test, a.seed, a.source, a.overwrite))


def _list(a) -> None:
    reg = {"models": MODELS, "criteria": CRITERIA, "datasets": DATASETS}[a.what]  # torch-free: fast
    for name in reg.names():
        print(f"{name:20s} {reg.help(name)}")


COMMANDS = {
    "compress": _compress,
    "export": _export,
    "train": _train,
    "bench": _bench,
    "sweep": _sweep,
    "report": _report,
    "list": _list,
    "make-detection-set": _make_detection_set,
}


def _flags(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """key -> how ``command`` spells it (``bench_iters`` is ``--bench-iters`` in compress, ``--iters`` in
    bench)."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    return {a.dest: (a.option_strings or [a.dest])[0] for a in sub._actions}


def main(argv: list[str] | None = None) -> int:
    def dispatch():
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.quiet:
            quiet()
        try:
            COMMANDS[args.command](args)
        except UsageError as e:  # the library names options by key; the command line by the flags typed
            if not e.params:
                raise
            raise UsageError(flag_words(str(e), e.params, _flags(parser, args.command))) from None

    if argv is not None:  # a library call keeps its own SIGTERM handling, and its process
        return guarded(dispatch)
    return finish(guarded(dispatch, sigterm=True))

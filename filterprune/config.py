"""The options of ``filterprune compress``, defined once: each ``CompressConfig`` field carries its
default and help, and the command line's flags (``cli.py``) and the sweep files' keys (``sweep/grid.py``)
are generated from these fields (open_lth's hparams idea). A new option is one field here.

Importing this module is cheap (no torch); the checks that need the registries import them when called.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import UsageError
from .options import int_list, json_object, option, round_to, str_list

DEFAULT_DATA_ROOT = "data"
DISTILL = ("anneal", "kd", "off")
MASK = "mask criteria (snip, grasp, synflow, mag, rand, imp)"
SOURCES = "the model and the images (your own model, pretrained weights, image folders)"


@dataclass
class CompressConfig:
    model: str = option(help='model: a registered name (`filterprune list models`), tv:<name>, timm:<name>, or your own factory path/to/file.py:fn or package.module:fn', positional=True)
    criterion: str = option(help='channel criterion (see `filterprune list criteria`)', required=True)
    sparsity: float | None = option(None, 'fraction of channels to remove, in [0, 1) (or one of --target-macs, --target-speedup, --target-latency)')
    dataset: str | None = option(None, 'dataset name (default: cifar10 if found under --data-root, else the embedded digits)')
    data_root: str = option(DEFAULT_DATA_ROOT, 'folder holding datasets (default: ./data)')
    checkpoint: str | None = option(None, 'dense weights to prune instead of training a baseline (filterprune checkpoint, .safetensors, .pt/.pth)')
    epochs: int = option(8, 'baseline training epochs (0 = untrained model); also the default finetune budget')
    finetune_epochs: int | None = option(None, "default: the recipe's (default: as many as --epochs, at least 8; lajic: 10)")
    batch_size: int = option(64, 'training batch size (the global batch under --distributed)')
    optimizer: str = option("sgd", 'baseline optimizer', choices=("sgd", "adam"))
    lr: float | None = option(None, 'baseline learning rate (default: 0.02 sgd, 1e-3 adam)')
    finetune_lr: float | None = option(None, "default: the recipe's (half the baseline lr; lajic: 1e-3)")
    schedule: str = option("cosine", 'learning-rate schedule', choices=("step", "cosine"))
    sparsity_reg: float = option(0.0, 'network-slimming L1 strength on BN scales during baseline training')
    scope: str | None = option(None, "allocation (default: the criterion's own: slimming and the mask criteria global, others layerwise)", choices=("layerwise", "global"))
    round_to: int | str = option(1, "round kept channels to a multiple of K, or 'auto': widths chosen from latencies measured on --target-runtime at --target-batch", parse=round_to, metavar="K|auto")
    target_runtime: str = option("onnxruntime", 'where --target-speedup/--target-latency and --round-to auto measure: onnxruntime, openvino (latency targets), torch, torch:cuda')
    target_batch: int = option(64, 'batch size of those measurements (default 64)')
    layer_floor: float = option(0.1, 'each layer keeps at least this fraction of its channels')
    calib_batches: int = option(8, 'training batches for data-driven criteria (greedy, snip, grasp)')
    target_macs: float | None = option(None, 'prune until MACs <= F x dense, F in (0, 1] (instead of --sparsity)', metavar="F")
    steps: int = option(1, 'reach the target in K prune -> finetune cycles', metavar="K")
    sparsity_epochs: int = option(0, 'sparsity-train the --checkpoint for N epochs with --sparsity-reg before pruning')
    device: str = option("auto", 'auto, cpu or cuda')
    seed: int = option(0, 'seed of the baseline, the validation split, random criteria and augmentations')
    out: str | None = option(None, 'output folder (default: runs/<model>-<criterion>-s<sparsity>)')
    overwrite: bool = option(False, 'replace an existing, non-empty --out')
    export: bool = option(True, 'skip ONNX export (and onnxruntime timing)', negate="--no-export")
    bench: bool = option(True, 'skip the latency benchmark', negate="--no-bench")
    bench_batch_sizes: tuple[int, ...] = option((1, 32), 'batch sizes of the benchmark, comma-separated', parse=int_list, metavar="B,...")
    bench_iters: int = option(20, 'timed calls per variant and batch size')
    bench_warmup: int = option(3, 'untimed calls before timing')
    bench_memory: bool = option(False, 'also record CPU peak RSS per variant (a fresh process per row, a few seconds each)')
    mode: str = option("shrink", 'shrink: remove channels (and time the masked model as a control); masked: only zero weights', choices=("shrink", "masked"), group=MASK)
    compression: float | None = option(None, 'mask keeps 10^-c of the weights (default: -2*log10(1-sparsity), 0.444 at s=0.4)', group=MASK)
    mask_scope: str = option("global", 'one mask threshold network-wide, or per layer', choices=("global", "layerwise"), group=MASK)
    mask_reduce: str = option("density", 'channel saliency: fraction of the filter the mask keeps, or its kept score sum', choices=("density", "sum"), group=MASK)
    imp_iterations: int = option(2, 'IMP train-prune-rewind cycles (>= 1)', group=MASK)
    imp_epochs: int | None = option(None, 'training epochs per IMP cycle (default: the finetune epochs)', group=MASK)
    distributed: bool = option(False, 'DDP training under torchrun (--batch-size is then the global batch): torchrun --nproc_per_node N -m filterprune ... --distributed')
    recipe: str = option("default", "finetune preset: default (the baseline's optimizer and schedule at half its lr, warm-up, as many epochs as --epochs, at least 8), lajic (the seed study's: SGD 1e-3 -> 1e-4 -> 1e-5, batch 32, rotation + flip, 10 epochs / 20 for 100 classes) or plain (a tenth of the baseline lr, 3 epochs)")
    distill: str = option("anneal", "finetuning distills from the dense model: anneal (default): the teacher's weight falls linearly from --distill-alpha to 0 over the finetune; kd: constant weight; off: plain cross-entropy")
    distill_alpha: float = option(0.7, "weight of the dense model's soft targets in [0, 1] (default 0.7)")
    distill_temperature: float = option(4.0, 'softmax temperature > 0 (default 4)')
    val_fraction: float = option(0.1, 'fraction of the training images held out (per class, drawn with --seed) to choose the kept epoch; never the test split; 0 = keep the last epoch (default 0.1)')
    scratch: bool = option(False, 'control: also train the pruned architecture from a fresh init for the same total epochs')
    target_speedup: float | None = option(None, 'instead of --sparsity: prune until the pruned model runs X times faster than the dense one, measured on --target-runtime at --target-batch', metavar="X")
    target_latency: float | None = option(None, 'instead of --sparsity: prune until one call takes MS milliseconds on --target-runtime', metavar="MS")
    threads: int | None = option(None, "threads of those measurements (default: torch's, i.e. the cores)")
    # where the model and the images come from (sources.py)
    model_args: dict | None = option(None, "keyword arguments for the model's factory or builder, a JSON object", parse=json_object, metavar="JSON", group=SOURCES)
    weights: str | None = option(None, 'tv:/timm: pretrained weights, DEFAULT or an enum name (e.g. IMAGENET1K_V1), read from the local torch hub / timm cache (nothing is downloaded)', metavar="NAME", group=SOURCES)
    image_size: int | None = option(None, "imagefolder: input side (default: the model's native input, 224 for ImageNet tv/timm models, 32 for the CIFAR ones)", metavar="N", group=SOURCES)
    train_subset: int | None = option(None, 'imagefolder: train on a seeded random subset of N images', metavar="N", group=SOURCES)
    workers: int | None = option(None, 'imagefolder: DataLoader worker processes (default: min(4, CPUs))', metavar="N", group=SOURCES)
    ignore_layers: tuple[str, ...] = option((), 'layers (module names) to keep whole besides the output layers', parse=str_list, metavar="NAME,...", group=SOURCES)

    def validate(self) -> None:
        from . import sources
        from .criteria import CRITERIA
        from .criteria.mask import MaskCriterion
        from .data import DATASETS
        from .masks import MODES
        from .recipes import RECIPES

        sources.validate(self)
        CRITERIA.get(self.criterion)
        if self.dataset is not None:
            DATASETS.get(self.dataset)
        targets = [self.sparsity, self.target_macs, self.target_speedup, self.target_latency]
        if sum(t is not None for t in targets) != 1:
            raise UsageError("give exactly one of --sparsity, --target-macs, --target-speedup or --target-latency")
        self.plan_config(self.scope or "layerwise")
        self.baseline_config()
        if self.steps < 1:
            raise UsageError(f"--steps must be >= 1, got {self.steps}")
        if self.target_latency is not None and self.steps > 1:
            raise UsageError("--target-latency is reached in one step; with --steps use --target-speedup")
        if self.sparsity_epochs < 0:
            raise UsageError(f"--sparsity-epochs must be >= 0, got {self.sparsity_epochs}")
        if self.sparsity_epochs and (self.checkpoint is None or not self.sparsity_reg):
            raise UsageError("--sparsity-epochs trains a given --checkpoint with --sparsity-reg > 0 (without "
                             "--checkpoint, --sparsity-reg already acts while the baseline trains)")
        if self.checkpoint is not None and self.sparsity_reg and not self.sparsity_epochs:
            raise UsageError("--sparsity-reg with --checkpoint needs --sparsity-epochs N (the sparsity training "
                             "of the given model before pruning)")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise UsageError(f"--finetune-epochs must be >= 0, got {self.finetune_epochs}")
        if self.recipe not in RECIPES:
            raise UsageError(f"unknown recipe {self.recipe!r}; valid: {', '.join(RECIPES)}")
        if self.distill not in DISTILL:
            raise UsageError(f"unknown --distill {self.distill!r}; valid: {', '.join(DISTILL)}")
        if not 0 <= self.val_fraction <= 0.5:
            raise UsageError(f"--val-fraction must be in [0, 0.5], got {self.val_fraction}")
        if self.finetune_lr is not None and not (0 < self.finetune_lr < 10):
            raise UsageError(f"--finetune-lr must be in (0, 10), got {self.finetune_lr}")
        self.finetune_config()
        if self.checkpoint is not None and not Path(self.checkpoint).exists():
            raise UsageError(f"checkpoint not found: {self.checkpoint}")
        if self.checkpoint is not None and not (Path(self.checkpoint).is_file() or Path(self.checkpoint).is_dir()):
            raise UsageError(f"checkpoint is not a regular file or folder: {self.checkpoint}")
        if any(b < 1 for b in self.bench_batch_sizes) or self.bench_iters < 1 or self.bench_warmup < 0:
            raise UsageError("benchmark batch sizes and iterations must be >= 1")
        if self.calib_batches < 1:
            raise UsageError(f"--calib-batches must be >= 1, got {self.calib_batches}")
        self.mask_config()
        if self.mode not in MODES:
            raise UsageError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.mode == "masked" and not issubclass(CRITERIA.get(self.criterion), MaskCriterion):
            raise UsageError(f"--mode masked needs a mask criterion (grasp, imp, mag, rand, snip, synflow), "
                             f"not {self.criterion!r}")

    def plan_config(self, scope: str):
        from .pruning.plan import PlanConfig

        return PlanConfig(self.sparsity or 0.0, scope, self.round_to, self.layer_floor, target_macs=self.target_macs,
                          target_runtime=self.target_runtime, target_batch=self.target_batch,
                          target_speedup=self.target_speedup, target_latency=self.target_latency, threads=self.threads)

    def baseline_config(self):
        from .train import TrainConfig

        return TrainConfig(epochs=self.epochs, optimizer=self.optimizer, lr=self.lr, schedule=self.schedule,
                           batch_size=self.batch_size, sparsity_reg=self.sparsity_reg, seed=self.seed)

    def finetune_config(self, num_classes: int = 10):
        """The recipe's finetune settings, with the flags that were given taking precedence."""
        from .recipes import RECIPES

        r, base = RECIPES[self.recipe], self.baseline_config()
        lr = self.finetune_lr if self.finetune_lr is not None else r.lr if r.lr is not None else \
            r.lr_factor * base.learning_rate
        epochs = self.finetune_epochs if self.finetune_epochs is not None else r.finetune_epochs(num_classes, self.epochs)
        return replace(base, epochs=epochs, lr=lr, optimizer=r.optimizer or base.optimizer,
                       schedule=r.schedule or base.schedule,
                       batch_size=r.batch_size or base.batch_size, crop=r.crop, weight_decay=r.weight_decay,
                       warmup_epochs=min(r.warmup_epochs, epochs), label_smoothing=r.label_smoothing,
                       sparsity_reg=0.0, distill_alpha=self.distill_alpha if self.distill != "off" else 0.0,
                       distill_temperature=self.distill_temperature, distill_anneal=self.distill == "anneal")

    def scratch_config(self, num_classes: int):
        """Liu et al.'s control: the baseline's recipe for the run's total epochs (baseline + finetuning)."""
        ft = self.finetune_config(num_classes)
        return replace(self.baseline_config(), epochs=self.epochs + ft.epochs * self.steps)

    def mask_config(self, num_classes: int = 10):
        from .masks import MaskConfig, default_compression

        if self.imp_epochs is not None and self.imp_epochs < 0:
            raise UsageError(f"--imp-epochs must be >= 0, got {self.imp_epochs}")
        ft = self.finetune_config(num_classes)  # IMP trains the seed's way: no teacher
        imp_train = replace(ft, epochs=ft.epochs if self.imp_epochs is None else self.imp_epochs, distill_alpha=0.0)
        c = self.compression
        if c is None:  # tied to the target: density (1-s)^2, or the MAC fraction itself under --target-macs
            c = default_compression(self.sparsity) if self.sparsity is not None else \
                -math.log10(self.target_macs) if self.target_macs is not None else \
                math.log10(self.target_speedup or 2.0)  # a latency target: the density 1/X (or 1/2)
        return MaskConfig(c, self.mask_scope, self.mask_reduce, self.imp_iterations, imp_train)



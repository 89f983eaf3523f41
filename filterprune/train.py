"""Training and evaluation loops shared by baseline training and post-pruning finetuning.

The optimizer is always built inside ``train`` from the model's *current* parameters, so a pruned
model never trains with an optimizer that still holds the old full-size tensors. Finetuning may distill
from a frozen teacher (the dense model), and when the data carries a validation split (carved from the
training images) the epoch kept is the one with the best validation top-1, never chosen on the test split.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from . import distributed
from .data import make_loader
from .data.source import DataSource
from .errors import RunError, UsageError
from .log import progress_bars, say
from .tasks import Task, make_task
from .tracing import eval_mode

DEFAULT_LR = {"sgd": 0.02, "adam": 1e-3}


class NonFiniteLoss(RunError):
    """Training stopped on a NaN/inf loss; the model holds the weights of ``good_epoch`` (0 = as given)."""

    def __init__(self, desc: str, loss: float, epoch: int, saved_in: str | None = None):
        self.desc, self.loss, self.good_epoch = desc, loss, epoch - 1
        where = f", saved in {saved_in}" if saved_in else ""
        super().__init__(
            f"{desc}: loss became {loss} in epoch {epoch}; stopped and kept the weights of epoch "
            f"{epoch - 1}{where} (lower --lr?)"
        )

    def saved(self, folder) -> NonFiniteLoss:
        """The same error, saying where the kept weights were written."""
        return NonFiniteLoss(self.desc, self.loss, self.good_epoch + 1, str(folder))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    optimizer: str = "sgd"
    lr: float | None = None  # None: DEFAULT_LR[optimizer]
    schedule: str = "cosine"
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sparsity_reg: float = 0.0  # network slimming: lambda * sign(gamma) added to every BN gamma gradient
    augment: bool = True
    seed: int = 0
    crop: bool = True  # random crop among the augmentations (the seed recipe has rotation + flip only)
    warmup_epochs: float = 0.0  # linear learning-rate warm-up before the schedule
    label_smoothing: float = 0.0
    distill_alpha: float = 0.0  # weight of the teacher's soft targets (used only when a teacher is given)
    distill_temperature: float = 4.0
    distill_anneal: bool = False  # the teacher's weight falls linearly from distill_alpha to 0 over training

    def __post_init__(self):
        if self.epochs < 0:
            raise UsageError(f"--epochs must be >= 0, got {self.epochs}")
        if self.optimizer not in DEFAULT_LR:
            raise UsageError(f"unknown optimizer {self.optimizer!r}; valid: {', '.join(DEFAULT_LR)}")
        if self.schedule not in ("step", "cosine"):
            raise UsageError(f"unknown schedule {self.schedule!r}; valid: step, cosine")
        if self.lr is not None and not (0 < self.lr < 10):
            raise UsageError(f"--lr must be in (0, 10), got {self.lr}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.sparsity_reg < 0:
            raise UsageError(f"--sparsity-reg must be >= 0, got {self.sparsity_reg}")
        if not -(2**63) <= self.seed < 2**63:
            raise UsageError(f"--seed must fit in 64 bits, got {self.seed}")
        if not 0 <= self.distill_alpha <= 1:
            raise UsageError(f"--distill-alpha must be in [0, 1], got {self.distill_alpha}")
        if not (self.distill_temperature > 0 and math.isfinite(self.distill_temperature)):
            raise UsageError(f"--distill-temperature must be > 0, got {self.distill_temperature}")
        if not 0 <= self.label_smoothing < 1:
            raise UsageError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.warmup_epochs <= max(self.epochs, 0):
            raise UsageError(f"warm-up epochs must be in [0, epochs], got {self.warmup_epochs}")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lr"] = self.learning_rate
        return d


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda requested but no CUDA GPU is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    return torch.device(name)


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    return torch.optim.Adam(params, lr=cfg.learning_rate)


def _scheduler(opt, cfg: TrainConfig, steps: int, steps_per_epoch: int):
    warm = min(round(cfg.warmup_epochs * steps_per_epoch), steps - 1) if steps > 1 else 0
    rest = steps - warm
    main: torch.optim.lr_scheduler.LRScheduler
    if cfg.schedule == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(rest, 1))
    else:  # step: x0.1 at 1/3 and 2/3 of training, the 1e-3 -> 1e-4 -> 1e-5 ladder of the seed study
        main = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[rest // 3, 2 * rest // 3], gamma=0.1)
    if not warm:
        return main
    ramp = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: (i + 1) / (warm + 1))
    return torch.optim.lr_scheduler.SequentialLR(opt, [ramp, main], milestones=[warm])


def _alpha(cfg: TrainConfig, step: int, steps: int) -> float:
    """The teacher's weight at ``step`` of ``steps``: constant, or annealed linearly to 0 so that the last
    epochs learn from the labels alone (a long finetune can outgrow its teacher)."""
    return cfg.distill_alpha * (1 - step / steps) if cfg.distill_anneal else cfg.distill_alpha


def distill_loss(
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    y: torch.Tensor,
    alpha: float,
    temperature: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Hinton et al.'s loss (1-a)*CE(y) + a*T^2*KL(softmax(t/T) || softmax(s/T)); plain cross-entropy
    without a teacher or with a = 0. The T^2 keeps the soft term's gradient scale independent of T."""
    ce = F.cross_entropy(student, y, label_smoothing=label_smoothing)
    if teacher is None or alpha == 0:
        return ce
    t = temperature
    kl = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher.float() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1 - alpha) * ce + alpha * t * t * kl


def add_slimming_subgradient(model: nn.Module, lam: float) -> None:
    """Liu et al. 2017: the L1 penalty lam*|gamma| contributes lam*sign(gamma) to each BN scale gradient."""
    for m in model.modules():
        if (
            isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.weight is not None
            and m.weight.grad is not None
        ):
            m.weight.grad.add_(lam * torch.sign(m.weight.detach()))


def train(
    model: nn.Module,
    data: DataSource,
    cfg: TrainConfig,
    device: torch.device,
    desc: str = "train",
    teacher: nn.Module | None = None,
    task: Task | None = None,
) -> list[dict]:
    """Train in place; returns one {epoch, loss, train_top1[, val_top1, kept]} row per epoch (``task``:
    how a batch becomes a loss and what validation measures, default classification; its headline metric
    names the ``val_`` key).

    ``teacher``: a frozen model whose logits on the same augmented batch are distilled into ``model``
    with ``cfg.distill_alpha``/``distill_temperature``; it runs in eval and inference mode, is never
    updated and receives no gradient. With a validation split in ``data`` the weights of the epoch with
    the best validation top-1 are kept (``kept`` marks it). A NaN or inf loss stops training, restores
    the weights of the last finished epoch and raises.
    """
    if cfg.epochs == 0:
        return []
    task = task or make_task("classification")
    torch.manual_seed(cfg.seed + distributed.rank())  # --distributed: each rank its own augmentations
    model.to(device).train()
    if teacher is not None:
        teacher.to(device)
    loader = distributed.shard(
        make_loader(data, "train", cfg.batch_size, augment=cfg.augment, seed=cfg.seed, crop=cfg.crop),
        cfg.seed,
    )
    net = distributed.wrap(model, device)  # DDP under --distributed (same parameters), else the model itself
    opt = _optimizer(model, cfg)
    steps, step = cfg.epochs * len(loader), 0
    sched = _scheduler(opt, cfg, steps, len(loader))
    history: list[dict] = []
    last_good = copy.deepcopy(model.state_dict())
    best: _Best | None = None
    # frozen teacher: eval mode (given back as it was, also when training stops on a NaN), forward under
    # inference_mode, so it never gets a gradient
    with eval_mode(teacher) if teacher is not None else contextlib.nullcontext():
        started = time.perf_counter()
        for epoch in range(1, cfg.epochs + 1):
            loop = _Epoch(model, net, teacher, opt, sched, cfg, device, desc, last_good, task)
            shares = loop.run(loader, epoch, step, steps)  # this rank's (images, correct, summed loss)
            step += len(loader)
            total, correct, loss_sum = distributed.summed(*shares)  # over all ranks' shares
            row = {"epoch": epoch, "loss": loss_sum / total}
            if loop.scored:
                row["train_top1"] = correct / total
            if data.y_val is not None:
                best = _validate(model, data, device, row, best, task)
            history.append(row)
            _say_epoch(desc, row, cfg.epochs, started, task)
            last_good = copy.deepcopy(model.state_dict())
    if best is not None:
        model.load_state_dict(best[2])
        history[best[1] - 1]["kept"] = True
    distributed.sync_buffers(model)
    return history


_Best = tuple[float, int, dict]  # (validation headline, epoch, weights) of the best epoch so far


def _validate(
    model: nn.Module, data: DataSource, device: torch.device, row: dict, best: _Best | None, task: Task
) -> _Best:
    """Put the epoch's validation headline metric (top-1 for classification) in ``row``; the new best epoch
    if this one is it (ties: the later, longer-trained epoch), else ``best``."""
    distributed.sync_buffers(model)
    key = f"val_{task.headline}"
    row[key] = _val_headline(model, data, device, task)
    model.train()
    if best is None or row[key] >= best[0]:
        best = (row[key], row["epoch"], copy.deepcopy(model.state_dict()))
    return best


def _say_epoch(desc: str, row: dict, epochs: int, started: float, task: Task) -> None:
    key = f"val_{task.headline}"
    val = f", val {task.metrics[task.headline]} {100 * row[key]:.1f}%" if key in row else ""
    train = f", train top-1 {100 * row['train_top1']:.1f}%" if "train_top1" in row else ""
    say(
        f"{desc} epoch {row['epoch']}/{epochs}: loss {row['loss']:.4f}{train}"
        f"{val}{_eta(started, row['epoch'], epochs)}"
    )


def _eta(started: float, done: int, total: int) -> str:
    """`` (12 s; 1 min left)``: the time so far and, from the mean epoch, what remains."""
    spent = time.perf_counter() - started
    left = spent / done * (total - done)
    return f" ({_duration(spent)}" + (f"; {_duration(left)} left)" if total > done else ")")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min" if s < 5400 else f"{s / 3600:.1f} h"


class _Epoch:
    """One pass over the training batches: forward (and the frozen teacher's), the distillation loss,
    a stop on a non-finite loss (restoring ``last_good``), backward, the slimming subgradient, the step."""

    def __init__(
        self,
        model,
        net,
        teacher,
        opt,
        sched,
        cfg: TrainConfig,
        device,
        desc: str,
        last_good: dict,
        task: Task,
    ):
        self.model, self.net, self.teacher, self.opt, self.sched = model, net, teacher, opt, sched
        self.cfg, self.device, self.desc, self.last_good, self.task = cfg, device, desc, last_good, task
        self.scored = True  # every batch counted its correct predictions (classification)

    def run(self, loader, epoch: int, step: int, steps: int) -> tuple[int, int, float]:
        cfg, device = self.cfg, self.device
        total, correct, loss_sum = 0, 0, 0.0
        distributed.set_epoch(loader, epoch)
        bar = tqdm(
            loader,
            desc=f"{self.desc} {epoch}/{cfg.epochs}",
            leave=False,
            file=sys.stderr,
            dynamic_ncols=True,
            disable=progress_bars() if distributed.is_main() else True,
        )
        for batch in bar:
            out = self.task.step(self.net, self.teacher, batch, device, _alpha(cfg, step, steps), cfg)
            loss = out.loss
            step += 1
            (seen,) = distributed.summed(loss.item())  # every rank stops if any rank's loss is not finite
            if not math.isfinite(seen):
                self.model.load_state_dict(self.last_good)
                raise NonFiniteLoss(self.desc, seen, epoch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.sparsity_reg:
                add_slimming_subgradient(self.model, cfg.sparsity_reg)
            self.opt.step()
            self.sched.step()
            total += out.examples
            if out.correct is None:
                self.scored = False
            else:
                correct += int(out.correct.item())
            loss_sum += loss.item() * out.examples
            acc = {"acc": f"{100 * correct / total:.1f}%"} if self.scored else {}
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", **acc)
        return total, correct, loss_sum


def _val_headline(model: nn.Module, data: DataSource, device: torch.device, task: Task) -> float:
    """The validation headline metric, the same number on every rank (rank 0 evaluates, the others
    receive it)."""
    acc = task.evaluate(model, data, device, split="val")
    (value,) = distributed.summed(acc[task.headline] if acc else 0.0)
    return value


@torch.no_grad()
def evaluate(
    model: nn.Module, data: DataSource, device: torch.device, batch_size: int = 256, split: str = "test"
) -> dict | None:
    """Top-1 / top-5 accuracy and mean loss on ``split`` (None on the ranks but 0 of a
    ``--distributed`` run: rank 0 alone evaluates)."""
    if not distributed.is_main():
        return None
    model.to(device).eval()
    loader = make_loader(data, split, batch_size, augment=False, shuffle=False)
    n, top1, top5, loss = 0, 0, 0, 0.0
    k = min(5, data.num_classes)
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        pred = out.topk(k, dim=1).indices
        top1 += (pred[:, 0] == y).sum().item()
        top5 += (pred == y[:, None]).any(dim=1).sum().item()
        n += len(y)
    return {"top1": top1 / n, "top5": top5 / n, "loss": loss / n, "images": n}

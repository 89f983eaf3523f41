"""Finetune recipes: named presets for how a pruned network is trained back.

A recipe fills the finetune settings a run leaves unset (``--finetune-epochs``, ``--finetune-lr``); an
explicit flag always wins. ``default`` is filterprune's own, compared with the others on the real
CIFAR-10 subset in benchmarks/accuracy/ (resnet20, l1 0.4, seed 0, 8 epochs: 61.5% with distillation vs
55.5% for ``lajic`` and 49.9% for ``plain``). It finetunes as long as the baseline trained: with
constant-α distillation, 8 epochs lost 3.3 points from dense (l1, 3 seeds) where the baseline's 30 lost 0.1
(3 seeds); the annealed default gains 2.1 at 30.
How much the teacher weighs is ``--distill`` (config.py), not the recipe's.
``lajic`` is the seed study's (Lajić et al. 2025, section 4); ``plain`` is what filterprune did before.
Adding a recipe is one entry in ``RECIPES``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    help: str
    optimizer: str | None  # None: the run's --optimizer (that of the baseline)
    lr: float | None  # None: lr_factor x the baseline learning rate
    lr_factor: float
    schedule: str | None  # None: the run's --schedule
    epochs: int  # at least this many
    epochs_many_classes: int  # for datasets with >= 100 classes (CIFAR-100)
    baseline_share: float  # and at least this share of the baseline's epochs (--epochs)
    batch_size: int | None  # None: --batch-size
    crop: bool  # random crop among the augmentations
    warmup_epochs: float
    label_smoothing: float
    weight_decay: float

    def finetune_epochs(self, num_classes: int, baseline_epochs: int) -> int:
        fixed = self.epochs_many_classes if num_classes >= 100 else self.epochs
        return max(fixed, round(self.baseline_share * baseline_epochs))


RECIPES: dict[str, Recipe] = {
    "default": Recipe(
        help="the baseline's optimizer and schedule (SGD, cosine) at half its lr after a 1/2-epoch "
        "warm-up, as many epochs as the baseline's (at least 8; 16 for >= 100 classes), "
        "crop + flip + rotation",
        optimizer=None,
        lr=None,
        lr_factor=0.5,
        schedule=None,
        epochs=8,
        epochs_many_classes=16,
        baseline_share=1.0,
        batch_size=None,
        crop=True,
        warmup_epochs=0.5,
        label_smoothing=0.0,
        weight_decay=5e-4,
    ),
    "plain": Recipe(
        help="filterprune 0.1's finetune: the baseline's optimizer and schedule at a tenth of its lr, "
        "3 epochs",
        optimizer=None,
        lr=None,
        lr_factor=0.1,
        schedule=None,
        epochs=3,
        epochs_many_classes=3,
        baseline_share=0.0,
        batch_size=None,
        crop=True,
        warmup_epochs=0.0,
        label_smoothing=0.0,
        weight_decay=5e-4,
    ),
    "lajic": Recipe(
        help="the seed study's: SGD lr 1e-3 -> 1e-4 -> 1e-5, batch 32, rotation + flip, 10 epochs (20 for "
        ">= 100 classes)",
        optimizer="sgd",
        lr=1e-3,
        lr_factor=0.0,
        schedule="step",
        epochs=10,
        epochs_many_classes=20,
        baseline_share=0.0,
        batch_size=32,
        crop=False,
        warmup_epochs=0.0,
        label_smoothing=0.0,
        weight_decay=5e-4,
    ),
}

"""``mag`` — one-shot magnitude pruning: the mask keeps the largest |w| (global by default); the
structured ``magnitude`` (``structured/magnitude.py``) scores whole channels by their coupled L2 norm."""

from .base import MaskCriterion


class Mag(MaskCriterion):
    name = "mag"

    def weight_scores(self, model, layers, ctx):
        return {n: m.weight.detach().abs() for n, m in layers.items()}

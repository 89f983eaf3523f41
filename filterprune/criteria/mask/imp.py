"""``imp`` — Iterative Magnitude Pruning: train with the mask, prune globally by |w|, rewind, repeat
``--imp-iterations`` times (2-4 in the seed study); see ``masks.schedule.imp`` for the details."""

from ...errors import UsageError
from ...masks.schedule import imp
from .base import MaskCriterion


class IMP(MaskCriterion):
    reads = (*MaskCriterion.reads, "imp_iterations", "imp_epochs")
    name = "imp"

    def make_mask(self, model, ctx, cfg):
        if cfg.imp_train is None:
            raise UsageError("criterion 'imp' needs a training configuration (MaskConfig.imp_train)")
        return imp(model, cfg.density, cfg.scope, cfg.imp_iterations, cfg.imp_train, ctx)

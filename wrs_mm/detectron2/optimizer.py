"""Optimizer parameters for Detectron2 with the param groups wrs_mm's hooks
claim (:mod:`wrs_mm.core.param_groups`)."""
from typing import Sequence

from detectron2.solver import get_default_optimizer_params
from torch import nn

from ..core.param_groups import ROLE_SHIFTED, ROLE_WRS, add_role_groups
from ..core.plugin import has_analysis_pending

#: how a Detectron2 user gets the role groups (named in the hooks' errors)
D2_FIX = ('Build the optimizer parameters with '
          'wrs_mm.detectron2.get_wrs_optimizer_params instead of '
          'detectron2.solver.get_default_optimizer_params.')


def get_wrs_optimizer_params(model: nn.Module,
                             roles: Sequence[str] = (ROLE_WRS, ROLE_SHIFTED),
                             **kwargs):
    """``detectron2.solver.get_default_optimizer_params(model, **kwargs)``
    (``base_lr``, ``weight_decay``, ``weight_decay_norm``,
    ``bias_lr_factor``, ``weight_decay_bias``, ``lr_factor_func``,
    ``overrides``: the same arguments, the same groups, merged by settings
    as its ``reduce_param_groups`` does), followed by one empty group per
    wrs_mm role for each group that holds a trainable weight of >= 2 dims:
    the group's settings with ``weight_decay=0``. On the first training
    forward, :class:`~wrs_mm.detectron2.WeightRescaleHook` and
    :class:`~wrs_mm.detectron2.ShiftedLpHook` move the weights they act on
    into those groups, so the decay comes off exactly them; the number of
    groups never changes (Detectron2's LR schedulers keep one value per
    group). The first training forward raises a ``RuntimeError`` when no
    such hook is registered with the trainer.

    In a LazyConfig::

        optimizer.params._target_ = get_wrs_optimizer_params
    """
    groups = get_default_optimizer_params(model, **kwargs)
    _require_a_hook(model)
    return add_role_groups(groups, roles)


def _require_a_hook(model: nn.Module) -> None:
    """Raise at the first training forward unless a wrs_mm hook waits for
    it: the groups alone change nothing, and Detectron2's own
    ``tools/lazyconfig_train_net.py`` ignores ``train.hooks``."""

    def check(module, args):
        if not module.training:
            return
        handle.remove()
        if not has_analysis_pending(module):
            raise RuntimeError(
                'get_wrs_optimizer_params built the no-decay groups of '
                'wrs_mm, but no WeightRescaleHook or ShiftedLpHook is '
                "registered with the trainer. Detectron2's own "
                'tools/lazyconfig_train_net.py registers a fixed list of '
                'hooks and ignores train.hooks: train with '
                "wrs_mm's tools/detectron2/lazyconfig_train_net.py, or call "
                'trainer.register_hooks([WeightRescaleHook(...)]) in your '
                'own script.')

    handle = model.register_forward_pre_hook(check)

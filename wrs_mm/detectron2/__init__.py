"""Detectron2 adapter: weight rescaling (WRS) and the eps-shifted Lp
regularizer in Detectron2's own idioms, over :mod:`wrs_mm.core`. Needs
Detectron2 and PyTorch, never mmengine.

* :class:`WeightRescaleHook`, :class:`ShiftedLpHook`,
  :class:`NormDynamicsHook`: ``HookBase`` hooks for ``SimpleTrainer`` /
  ``AMPTrainer`` / ``DefaultTrainer`` (``trainer.register_hooks``);
* :func:`get_wrs_optimizer_params`: a drop-in for
  ``detectron2.solver.get_default_optimizer_params`` that adds the no-decay
  groups the hooks move their weights into;
* :func:`add_wrs_config`, :func:`build_wrs_optimizer`,
  :func:`build_wrs_hooks`: the same for yacs configs (``cfg.WRS``).
"""
from .config import add_wrs_config, build_wrs_hooks, build_wrs_optimizer
from .hooks import NormDynamicsHook, ShiftedLpHook, WeightRescaleHook
from .optimizer import get_wrs_optimizer_params

__all__ = [
    'WeightRescaleHook', 'ShiftedLpHook', 'NormDynamicsHook',
    'get_wrs_optimizer_params', 'add_wrs_config', 'build_wrs_optimizer',
    'build_wrs_hooks'
]

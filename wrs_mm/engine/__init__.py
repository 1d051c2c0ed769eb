"""mmengine adapters over :mod:`wrs_mm.core`, registered in mmengine's root
registries (visible from the mmdet / mmseg default scopes).

* :class:`WeightRescaleHook` (``custom_hooks``): WRS every ``interval`` steps;
* :class:`WRSOptimWrapperConstructor` (``optim_wrapper.constructor``): param
  groups by settings, with a group per role for the weights WRS or the
  shifted regularizer take the decay off, and ``paramwise_cfg.shifted_reg``;
* :class:`NormDynamicsHook`: weight-norm / effective-lr diagnostics;
* :class:`CheckpointOnSignalHook`: on a scheduler's warning signal, a
  resumable checkpoint at the iteration's end, then requeue or exit;
* :class:`WRSPlugin` (``plugin.py``): where they meet (the analysis of the
  first forward, the optimizer-step callbacks and their order), and
  ``param_groups.py``: the optimizer's param groups, and what the features
  write in them.
"""
from mmengine.config.utils import MODULE2PACKAGE

from .checkpoint_on_signal_hook import (CheckpointOnSignalHook,
                                        TrainingPreempted)
from .norm_dynamics_hook import NormDynamicsHook, read_norm_dynamics
from .optim_constructor import WRSOptimWrapperConstructor
from .plugin import WRSPlugin
from .weight_rescale_hook import WeightRescaleHook

# `_base_ = 'wrs_mm::yolov3/...'`: mmengine resolves `package::path` only for
# the packages in this table, from `<package>/.mim/configs` (setup.py).
# wrs_mm_config_hook.pth adds it before anything imports wrs_mm, but it may
# not import wrs_mm (torch) nor be installed (WRS_MM_CONFIG_HOOK=0): twice.
MODULE2PACKAGE.setdefault('wrs_mm', 'wrs_mm')

__all__ = [
    'CheckpointOnSignalHook', 'TrainingPreempted', 'NormDynamicsHook',
    'read_norm_dynamics', 'WRSOptimWrapperConstructor', 'WRSPlugin',
    'WeightRescaleHook'
]

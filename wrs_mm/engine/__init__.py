"""mmengine adapters over :mod:`wrs_mm.core`, registered in mmengine's root
registries (visible from the mmdet / mmseg default scopes)."""
from .norm_dynamics_hook import NormDynamicsHook, read_norm_dynamics
from .optim_constructor import WRSOptimWrapperConstructor
from .probe import FirstForwardAnalysis, first_forward_analysis
from .weight_rescale_hook import WeightRescaleHook

__all__ = [
    'NormDynamicsHook', 'read_norm_dynamics', 'WRSOptimWrapperConstructor',
    'FirstForwardAnalysis',
    'first_forward_analysis', 'WeightRescaleHook'
]

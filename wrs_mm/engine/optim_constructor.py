"""Optimizer-wrapper constructor: param groups by settings, with a group per
wrs_mm role to take the decay off exactly the weights WRS or the shifted
regularizer act on, and the eps-shifted Lp regularizer."""
import inspect
from typing import Optional

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)
from torch import nn

from ..core.param_groups import ROLE_SHIFTED, ROLE_WRS
from ..core.shifted_regularization import (ShiftedRegularization,
                                           check_shifted_cfg)
from .param_groups import MMENGINE_FIX, group_by_settings
from .plugin import WRSPlugin, log_current, refuse_sharding, unwrap

OWNER = 'paramwise_cfg.shifted_reg'


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class WRSOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` whose param groups let
    ``WeightRescaleHook`` and ``shifted_reg`` remove the decay of exactly the
    weights they act on: every ``paramwise_cfg`` option (``custom_keys``,
    ``norm_decay_mult``, ``bias_decay_mult``, ...) sets each parameter's
    settings as usual, then the parameters of equal settings share one group,
    and each such class gets an empty group per wrs_mm role (its settings with
    ``weight_decay=0``) that the chosen weights move into before the first
    step (:mod:`wrs_mm.core.param_groups`). A step costs the optimizer's
    multi-tensor ops once per non-empty group: two groups for a config
    without ``paramwise_cfg`` (one with mmengine's default constructor).

    ``paramwise_cfg.shifted_reg`` adds the eps-shifted Lp regularizer (Li et
    al., Sec. 5; see :mod:`wrs_mm.core.shifted_lp`), which replaces the weight
    decay of the selected weights, per optimizer step:

    * ``eps`` (float >= 0, default 1e-3) and ``p`` (>= 1, default 2);
    * ``mode``: ``'coupled'`` (added to the gradient before the step, as the
      paper does with SGD; default) or ``'decoupled'`` (AdamW-style shrink by
      ``lr * lambda * dR/dw``);
    * ``weight_decay``: lambda; default: the decay each weight's group was
      configured with (``optimizer.weight_decay`` times its multipliers);
    * ``include`` / ``exclude`` / ``allow_non_invariant``: as in
      ``WeightRescaleHook``; by default every weight the invariance analysis
      finds invariant (weight-standardised convs use the std-shifted form);
    * ``backend``: ``'auto'`` (default: one fused Triton kernel on CUDA, a
      per-parameter loop on CPU), ``'triton'``, ``'torch'`` or ``'loop'``;
    * ``self_check``: check the Triton kernel against the torch reference on
      its first step and fall back to ``'torch'`` with a warning if it fails
      or disagrees (default True; :mod:`wrs_mm.core.selfcheck`).

    The weights are chosen on the first training forward (the invariance
    analysis), before the first step. The regularizer runs right before every
    real optimizer step (:class:`~wrs_mm.core.shifted_regularization.
    ShiftedRegularization`): it sees
    unscaled AMP gradients, is skipped with a skipped AMP step, and runs once
    per accumulated update.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        shifted = paramwise_cfg.pop('shifted_reg', None)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.shifted_cfg = None if shifted is None else check_shifted_cfg(
            shifted, OWNER)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper of ``model`` (unwrapped from DDP):
        the optimizer, its param groups by settings with the role groups,
        and the shifted regularizer attached to the wrapper's
        :class:`~wrs_mm.engine.plugin.WRSPlugin` when configured."""
        wrapped, model = model, unwrap(model)
        # a plain dict: a ConfigDict would turn the param groups into
        # ConfigDicts, which torch.compile cannot trace in optimizer.step
        optimizer_cfg = dict(self.optimizer_cfg)
        optimizer_cls = optimizer_cfg['type']
        if isinstance(optimizer_cls, str):
            with OPTIMIZERS.switch_scope_and_registry(None) as registry:
                optimizer_cls = registry.get(optimizer_cls)
        first_arg = next(iter(inspect.signature(optimizer_cls).parameters))
        params: list = []
        self.add_params(params, model)  # one group per parameter
        optimizer_cfg[first_arg] = params
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        roles = (ROLE_WRS, ) + (
            (ROLE_SHIFTED, ) if self.shifted_cfg is not None else ())
        group_by_settings(optimizer, {
            id(p): n
            for n, p in model.named_parameters()
        }, roles)
        wrapper_cfg = self.optim_wrapper_cfg.copy()
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        if 'DeepSpeed' in str(wrapper_cfg['type']):
            # DeepSpeedStrategy wraps model and optimizer after this: refuse
            # now, as check_unsharded does for the engine later
            refuse_sharding("DeepSpeed (mmengine's DeepSpeedStrategy)")
        optim_wrapper = OPTIM_WRAPPERS.build(
            wrapper_cfg, default_args=dict(optimizer=optimizer))
        if self.shifted_cfg is not None:
            ShiftedRegularization(self.shifted_cfg, OWNER, MMENGINE_FIX,
                                  log_current).attach(
                                      WRSPlugin.of(optim_wrapper, wrapped))
        return optim_wrapper

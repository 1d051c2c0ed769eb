"""Optimizer-wrapper constructor: param groups by settings, with a group per
wrs_mm role to take the decay off exactly the weights WRS or the shifted
regularizer act on, and the eps-shifted Lp regularizer."""
import inspect
from typing import Optional

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)
from torch import nn

from ..core import ShiftedLpEntry, ShiftedLpRegularizer
from ..core.shifted_lp import check_options
from .options import at_least, boolean, validate
from .param_groups import (CONFIGURED_DECAY, ROLE_SHIFTED, ROLE_WRS,
                           claim_groups, group_by_settings, groups_summary)
from .plugin import SHIFTED_REG, WRSPlugin, refuse_sharding, unwrap
from .selection import check_patterns_match, compile_patterns, select

OWNER = 'paramwise_cfg.shifted_reg'
#: ``paramwise_cfg.shifted_reg`` options and their defaults
SHIFTED_DEFAULTS = dict(
    eps=1e-3,
    p=2.,
    mode='coupled',
    weight_decay=None,
    include=None,
    exclude=None,
    allow_non_invariant=False,
    backend='auto',
    self_check=True)
#: what the options core's ``check_options`` leaves accept
SHIFTED_OPTIONS = dict(
    weight_decay=at_least(0, none=True),
    allow_non_invariant=boolean(),
    self_check=boolean())


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class WRSOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` whose param groups let
    ``WeightRescaleHook`` and ``shifted_reg`` remove the decay of exactly the
    weights they act on: every ``paramwise_cfg`` option (``custom_keys``,
    ``norm_decay_mult``, ``bias_decay_mult``, ...) sets each parameter's
    settings as usual, then the parameters of equal settings share one group,
    and each such class gets an empty group per wrs_mm role (its settings with
    ``weight_decay=0``) that the chosen weights move into before the first
    step (:mod:`wrs_mm.engine.param_groups`). A step costs the optimizer's
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
    real optimizer step (:class:`~wrs_mm.engine.plugin.WRSPlugin`): it sees
    unscaled AMP gradients, is skipped with a skipped AMP step, and runs once
    per accumulated update.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        shifted = paramwise_cfg.pop('shifted_reg', None)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        self.shifted_cfg = None if shifted is None else self._check(shifted)

    @staticmethod
    def _check(cfg: dict) -> dict:
        unknown = set(cfg) - set(SHIFTED_DEFAULTS)
        if unknown:
            raise KeyError(f'{OWNER}: unknown keys {sorted(unknown)}; '
                           f'accepted: {tuple(SHIFTED_DEFAULTS)}')
        cfg = dict(SHIFTED_DEFAULTS, **cfg)
        check_options(cfg['eps'], cfg['p'], cfg['mode'], cfg['backend'], OWNER)
        validate(OWNER, cfg, SHIFTED_OPTIONS)
        for key in ('include', 'exclude'):
            cfg[key] = compile_patterns(cfg[key], f'{OWNER}.{key}')
        return cfg

    def __call__(self, model: nn.Module) -> OptimWrapper:
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
            ShiftedLpStep(self.shifted_cfg, model, optimizer).attach(
                WRSPlugin.of(optim_wrapper, wrapped))
        return optim_wrapper


class ShiftedLpStep:
    """``paramwise_cfg.shifted_reg`` at run time: chooses the regularized
    weights from the analysis, claims their param groups and applies
    :class:`~wrs_mm.core.ShiftedLpRegularizer` before every optimizer step."""

    def __init__(self, cfg: dict, model: nn.Module, optimizer):
        self.cfg, self.model, self.optimizer = cfg, model, optimizer
        self.regularizer: Optional[ShiftedLpRegularizer] = None
        self.groups = []
        check_patterns_match(cfg['include'], cfg['exclude'],
                             [n for n, _ in model.named_parameters()], OWNER)

    def attach(self, plugin: WRSPlugin) -> None:
        plugin.on_analysis(SHIFTED_REG, self.setup)
        plugin.on_step(SHIFTED_REG, pre=self.step)

    def setup(self, report) -> None:
        cfg = self.cfg
        chosen = select(report, cfg['include'], cfg['exclude'], OWNER,
                        cfg['allow_non_invariant'])
        if not chosen:
            print_log(
                f'{OWNER}: no weight to regularize; it does nothing.',
                logger='current',
                level=30)
            return
        params = dict(self.model.named_parameters())
        groups = claim_groups(self.optimizer,
                              {v.name: params[v.name]
                               for v in chosen}, ROLE_SHIFTED, OWNER)
        entries = [
            ShiftedLpEntry(
                v.name,
                params[v.name],
                groups[v.name][CONFIGURED_DECAY]
                if cfg['weight_decay'] is None else cfg['weight_decay'],
                standardized=v.kind == 'ws') for v in chosen
        ]
        self.regularizer = ShiftedLpRegularizer(
            entries,
            cfg['eps'],
            cfg['p'],
            cfg['mode'],
            cfg['backend'],
            self_check=cfg['self_check'])
        self.groups = [groups[n] for n in self.regularizer.names]
        print_log(
            f"{OWNER}: eps-shifted L{cfg['p']:g} ({cfg['mode']}, eps="
            f"{cfg['eps']:g}) on {len(entries)} weights (" +
            f"{sum(e.standardized for e in entries)} weight-standardised); "
            'their weight_decay is set to 0. Param groups:\n' +
            groups_summary(self.optimizer),
            logger='current')

    def step(self) -> None:
        if self.regularizer is None:
            return
        lrs = [g['lr'] for g in self.groups]
        self.regularizer.step_(lrs if self.cfg['mode'] ==
                               'decoupled' else None)
